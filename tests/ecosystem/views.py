"""The same DRF views, django-filter FilterSet and django-tables2 table, written once and built over two pairs of
models: the tiered ``orders.Order``/``accounts.Customer`` (``TIERED``) and their one-table copies (``PLAIN``).
Whatever the libraries do with a queryset, they do it to both; the tests compare the answers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import django_filters
import django_tables2 as tables
from django.shortcuts import render
from django_filters.rest_framework import DjangoFilterBackend
from django_tables2 import RequestConfig
from rest_framework import filters, generics, pagination, serializers

from accounts.models import Customer
from orders.models import Order
from tests.ecosystem.models import PlainCustomer, PlainOrder

PAGE_SIZE = 7  # small pages: many pages, and page edges inside runs of ties
# Every field of the order: its own, the customer's key, and NULLs (note) and ties (created_at, status, total).
ORDER_FIELDS = ["id", "customer", "created_at", "status", "total", "note"]
# search_fields: the order's own text and text through the relation to the (independently tiered) customer
# (icontains, and istartswith for the name)
SEARCH_FIELDS = ["note", "customer__email", "^customer__name"]


class PageNumber(pagination.PageNumberPagination):
    page_size = PAGE_SIZE
    page_size_query_param = "page_size"


class LimitOffset(pagination.LimitOffsetPagination):
    default_limit = PAGE_SIZE


class Cursor(pagination.CursorPagination):
    page_size = PAGE_SIZE
    ordering = "-created_at"  # ties: the cursor's offset within a position is exercised


class OrderTable(tables.Table):
    """One table class for both querysets: its columns name no model."""

    id = tables.Column()
    customer = tables.Column()  # str(customer): the related row, from whichever tier holds it
    email = tables.Column(accessor="customer__email")  # sorting by it orders by a field of the relation
    created_at = tables.DateTimeColumn()
    status = tables.Column()
    total = tables.Column()
    note = tables.Column()

    class Meta:
        order_by = "-created_at"
        attrs = {"class": "orders"}


@dataclass(frozen=True)
class Views:
    """The views and classes of one pair of models, under ``prefix`` in tests/ecosystem/urls.py."""

    prefix: str
    order: type
    customer: type
    serializer: type
    filterset: type
    page: Any
    limit: Any
    cursor: Any
    detail: Any
    table: Any


def build(prefix: str, order_model: type, customer_model: type) -> Views:
    class OrderSerializer(serializers.ModelSerializer):
        class Meta:
            model = order_model
            fields = ORDER_FIELDS

    class OrderFilter(django_filters.FilterSet):
        email = django_filters.CharFilter(field_name="customer__email", lookup_expr="icontains")
        name = django_filters.CharFilter(field_name="customer__name", lookup_expr="istartswith")
        # its choices are every customer, hot and cold
        customer = django_filters.ModelChoiceFilter(queryset=customer_model.objects.order_by("email"))
        customers = django_filters.ModelMultipleChoiceFilter(
            field_name="customer", queryset=customer_model.objects.all()
        )
        created = django_filters.DateFromToRangeFilter(field_name="created_at")
        customer_since = django_filters.DateFromToRangeFilter(field_name="customer__created_at")
        total = django_filters.RangeFilter()
        status = django_filters.MultipleChoiceFilter(choices=Order.Status.choices)
        any_status = django_filters.AllValuesFilter(field_name="status")
        no_note = django_filters.BooleanFilter(field_name="note", lookup_expr="isnull")
        o = django_filters.OrderingFilter(
            fields=("id", "created_at", "status", "total", "note", "customer", ("customer__email", "email"))
        )

        class Meta:
            model = order_model
            fields = ["status"]

    class OrderList(generics.ListAPIView):
        queryset = order_model.objects.all()
        serializer_class = OrderSerializer
        filter_backends = [DjangoFilterBackend, filters.SearchFilter, filters.OrderingFilter]
        filterset_class = OrderFilter
        search_fields = SEARCH_FIELDS
        ordering_fields = ["id", "created_at", "status", "total", "note", "customer", "customer__email"]
        ordering = ["-created_at"]

    class OrderDetail(generics.RetrieveAPIView):
        queryset = order_model.objects.all()
        serializer_class = OrderSerializer

    def table(request):
        orders = OrderTable(order_model.objects.select_related("customer"))
        RequestConfig(request, paginate={"per_page": PAGE_SIZE}).configure(orders)
        return render(request, "ecosystem/orders.html", {"table": orders})

    return Views(
        prefix=prefix,
        order=order_model,
        customer=customer_model,
        serializer=OrderSerializer,
        filterset=OrderFilter,
        page=OrderList.as_view(pagination_class=PageNumber),
        limit=OrderList.as_view(pagination_class=LimitOffset),
        cursor=OrderList.as_view(pagination_class=Cursor),
        detail=OrderDetail.as_view(),
        table=table,
    )


TIERED = build("tiered", Order, Customer)
PLAIN = build("plain", PlainOrder, PlainCustomer)
