"""Admins for the test-only tiered models with text and UUID keys: the admin tests run every changelist
feature on them as on the demo's models."""
from django.contrib import admin

from tiering.admin import TieredModelAdmin

from .models import Ticket, Voucher


@admin.register(Voucher)
class VoucherAdmin(TieredModelAdmin):
    list_display = ["code", "issued_at", "note"]
    list_filter = ["issued_at"]
    date_hierarchy = "issued_at"
    search_fields = ["code", "note"]
    ordering = ["-issued_at"]


@admin.register(Ticket)
class TicketAdmin(TieredModelAdmin):
    list_display = ["id", "issued_at", "note"]
    list_filter = ["issued_at"]
    date_hierarchy = "issued_at"
    search_fields = ["note"]
