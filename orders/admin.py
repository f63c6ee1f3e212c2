from django.contrib import admin

from tiering.admin import TieredModelAdmin

from .models import Order, OrderLine, Payment


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0


@admin.register(Order)
class OrderAdmin(TieredModelAdmin):
    # customer_id, not customer: the customer may live in the other tier.
    list_display = ["id", "customer_id", "created_at", "status", "total"]
    list_filter = ["status", "created_at"]
    date_hierarchy = "created_at"
    search_fields = ["=id", "note", "customer__email"]
    ordering = ["-created_at"]
    raw_id_fields = ["customer"]
    inlines = [OrderLineInline]


@admin.register(Payment)
class PaymentAdmin(TieredModelAdmin):
    list_display = ["id", "order_id", "amount", "method", "created_at", "last_accessed"]
    list_filter = ["method", "created_at", "last_accessed"]
    date_hierarchy = "created_at"
    search_fields = ["reference", "method"]
    ordering = ["-created_at"]
    raw_id_fields = ["order"]
