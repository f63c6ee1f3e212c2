"""factory-boy factories for the example models, shared by tests, seed_demo and benches.

Factories save through the router: new rows go to hot, and a child built for a
cold parent (``OrderLineFactory(order=cold_order)``) goes to the parent's tier.
Put a row in a given tier with ``SomeFactory(_using="alias")``; for bulk work
build unsaved instances with ``SomeFactory.build_batch(n)`` and ``bulk_create``
them into the alias you want.
"""
from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from accounts.models import Customer
from orders.models import Order, OrderLine, Payment


class TieredFactory(factory.django.DjangoModelFactory):
    """Accepts ``_using="alias"`` to create the row in that database alias."""

    class Meta:
        abstract = True

    @classmethod
    def _create(cls, model_class, *args, _using: str | None = None, **kwargs):
        # instance.save() lets the router see the instance, so a child built
        # for a cold parent is written to cold (Manager.create() would not).
        obj = model_class(*args, **kwargs)
        obj.save(force_insert=True, using=_using)
        return obj


def _recent(days: int = 730):
    """A datetime spread over the last ``days`` days."""
    return factory.LazyFunction(lambda: timezone.now() - timedelta(seconds=random.randrange(days * 86400)))


class CustomerFactory(TieredFactory):
    class Meta:
        model = Customer

    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    name = factory.Faker("name")
    last_seen = factory.LazyFunction(timezone.now)
    created_at = factory.LazyAttribute(lambda o: o.last_seen - timedelta(days=random.randrange(0, 365)))


class OrderFactory(TieredFactory):
    class Meta:
        model = Order

    customer = factory.SubFactory(CustomerFactory)
    created_at = factory.LazyFunction(timezone.now)
    status = factory.Iterator([s for s, _ in Order.Status.choices])
    total = factory.LazyFunction(lambda: Decimal(random.randrange(100, 100_000)) / 100)
    note = factory.Maybe(
        factory.LazyFunction(lambda: random.random() < 0.3),
        yes_declaration=factory.Faker("sentence"),
        no_declaration=None,
    )


class OldOrderFactory(OrderFactory):
    """An order old enough for the TimePolicy (older than 90 days)."""

    created_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=random.randrange(91, 730)))


class OrderLineFactory(TieredFactory):
    class Meta:
        model = OrderLine

    order = factory.SubFactory(OrderFactory)
    sku = factory.Sequence(lambda n: f"SKU-{n:06d}")
    quantity = factory.LazyFunction(lambda: random.randrange(1, 6))
    price = factory.LazyFunction(lambda: Decimal(random.randrange(100, 20_000)) / 100)


class PaymentFactory(TieredFactory):
    class Meta:
        model = Payment

    order = factory.SubFactory(OrderFactory)
    amount = factory.LazyAttribute(lambda o: o.order.total)
    method = factory.Iterator(["card", "transfer", "paypal"])
    reference = factory.Sequence(lambda n: f"PAY-{n:08d}")
    details = factory.LazyFunction(lambda: {"captured": True})
    created_at = factory.LazyAttribute(lambda o: o.order.created_at)
    last_accessed = factory.LazyAttribute(lambda o: o.created_at)
