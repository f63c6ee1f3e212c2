"""seed_demo: fill the hot tier with demo customers, orders, lines and payments."""
from __future__ import annotations

import random
import time
import uuid
from datetime import timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from accounts.models import Customer
from orders.models import Order, OrderLine, Payment
from tiering.conf import tiering_settings

SPREAD = timedelta(days=730)
FIRST_NAMES = ["Ada", "Alan", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Edsger"]
LAST_NAMES = ["Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie"]
NOTES = [None, None, None, "gift wrap", "leave at the door", "Lieferung ins Büro", "急ぎ"]


class Command(BaseCommand):
    help = (
        "Seed demo data into the HOT tier: customers, orders (with 1-4 lines each) and payments, "
        "with dates spread evenly over the last two years, written with bulk inserts. "
        "Everything lands in hot; run `manage.py migrate_cold` afterwards to move the cold part "
        "(orders older than 90 days, idle customers, old unread payments) to the cold tier."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--customers", type=int, default=200, help="Customers to create (default 200).")
        parser.add_argument("--orders", type=int, default=2000, help="Orders to create (default 2000).")
        parser.add_argument(
            "--payments", type=float, default=0.5, help="Share of orders that get a payment, 0..1 (default 0.5)."
        )
        parser.add_argument("--batch-size", type=int, default=5000, help="Rows per bulk insert (default 5000).")
        parser.add_argument("--seed", type=int, default=None, help="Random seed, for repeatable data.")

    def handle(self, *args, customers: int, orders: int, payments: float, batch_size: int, seed, **options):
        if customers < 0 or orders < 0:
            raise CommandError("--customers and --orders must be zero or more.")
        if not 0 <= payments <= 1:
            raise CommandError("--payments must be between 0 and 1.")
        if batch_size <= 0:
            raise CommandError("--batch-size must be a positive integer.")
        alias = tiering_settings.HOT
        if orders and not customers and not Customer.objects.using(alias).exists():
            raise CommandError("--orders needs customers: pass --customers N (there are none in the hot tier).")
        self.verbosity = options["verbosity"]
        rng = random.Random(seed)
        now = timezone.now()
        started = time.monotonic()

        customer_ids = self._customers(alias, customers, batch_size, rng, now)
        if not customer_ids and orders:
            customer_ids = list(Customer.objects.using(alias).values_list("pk", flat=True)[:100_000])
        counts = self._orders(alias, orders, customer_ids, payments, batch_size, rng, now)
        if self.verbosity >= 1:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Seeded {len(customer_ids) if customers else 0} customers, {counts['orders']} orders, "
                    f"{counts['lines']} order lines and {counts['payments']} payments into '{alias}' "
                    f"in {time.monotonic() - started:.1f}s. Run `manage.py migrate_cold` to move the cold part."
                )
            )

    def _progress(self, what: str, done: int, total: int) -> None:
        if self.verbosity >= 2:
            self.stdout.write(f"  {what}: {done}/{total}")

    def _customers(self, alias: str, n: int, batch_size: int, rng: random.Random, now) -> list[int]:
        token = uuid.uuid4().hex[:8]  # repeatable runs never collide on the unique email
        ids: list[int] = []
        for start in range(0, n, batch_size):
            batch = []
            for i in range(start, min(n, start + batch_size)):
                first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
                created = now - SPREAD * rng.random()
                batch.append(
                    Customer(
                        email=f"{first}.{last}.{token}.{i}@example.com".lower(),
                        name=f"{first} {last}",
                        created_at=created,
                        last_seen=created + (now - created) * rng.random(),
                    )
                )
            with transaction.atomic(using=alias):
                ids.extend(c.pk for c in Customer.objects.using(alias).bulk_create(batch))
            self._progress("customers", len(ids), n)
        return ids

    def _orders(self, alias, n, customer_ids, payment_share, batch_size, rng, now) -> dict[str, int]:
        counts = {"orders": 0, "lines": 0, "payments": 0}
        statuses = [s for s, _ in Order.Status.choices]
        for start in range(0, n, batch_size):
            size = min(n, start + batch_size) - start
            batch, pending_lines = [], []
            for _ in range(size):
                lines, total = [], Decimal(0)
                for _k in range(rng.randint(1, 4)):
                    price = Decimal(rng.randrange(100, 20_000)) / 100
                    quantity = rng.randint(1, 5)
                    total += price * quantity
                    lines.append(OrderLine(sku=f"SKU-{rng.randrange(10_000):05d}", quantity=quantity, price=price))
                pending_lines.append(lines)
                batch.append(
                    Order(
                        customer_id=rng.choice(customer_ids),
                        created_at=now - SPREAD * rng.random(),
                        status=rng.choice(statuses),
                        total=total,
                        note=rng.choice(NOTES),
                    )
                )
            with transaction.atomic(using=alias):
                created = Order.objects.using(alias).bulk_create(batch)
                lines, paid = [], []
                for order, order_lines in zip(created, pending_lines):
                    for line in order_lines:
                        line.order_id = order.pk
                    lines.extend(order_lines)
                    if rng.random() < payment_share:
                        # Most payments were last looked at soon after the order.
                        accessed = order.created_at + (now - order.created_at) * rng.random() ** 4
                        paid.append(Payment(order_id=order.pk, amount=order.total,
                                            method=rng.choice(["card", "transfer"]), reference=f"PAY-{order.pk}",
                                            created_at=order.created_at, last_accessed=accessed))
                OrderLine.objects.using(alias).bulk_create(lines, batch_size=batch_size)
                Payment.objects.using(alias).bulk_create(paid, batch_size=batch_size)
            counts["orders"] += len(created)
            counts["lines"] += len(lines)
            counts["payments"] += len(paid)
            self._progress("orders", counts["orders"], n)
        return counts
