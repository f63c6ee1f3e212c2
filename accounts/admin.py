from django.contrib import admin

from tiering.admin import TieredModelAdmin

from .models import Customer


@admin.register(Customer)
class CustomerAdmin(TieredModelAdmin):
    list_display = ["id", "email", "name", "last_seen", "created_at"]
    list_filter = ["last_seen", "created_at"]
    date_hierarchy = "created_at"
    search_fields = ["email", "name"]
    ordering = ["-last_seen"]
