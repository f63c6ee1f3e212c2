"""A second admin site for the tests: an order admin whose filters and search go through the relation to the
independently tiered Customer, beside the demo's URLs."""
from django.contrib import admin
from django.urls import path

from hotcold_site.urls import urlpatterns as demo_urlpatterns
from orders.models import Order
from tiering.admin import TieredModelAdmin


class CustomerInitialFilter(admin.SimpleListFilter):
    """A list filter through the relation: orders of customers whose name starts with a letter."""

    title = "customer initial"
    parameter_name = "customer_initial"

    def lookups(self, request, model_admin):
        return [("A", "A"), ("B", "B"), ("C", "C")]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(customer__name__startswith=self.value())
        return queryset


class OrderByCustomerAdmin(TieredModelAdmin):
    list_display = ["id", "customer_id", "status"]
    list_filter = ["customer__name", CustomerInitialFilter, "status"]
    search_fields = ["customer__email", "customer__name"]


site = admin.AdminSite(name="relations_admin")
site.register(Order, OrderByCustomerAdmin)

urlpatterns = [path("relations-admin/", site.urls), *demo_urlpatterns]
