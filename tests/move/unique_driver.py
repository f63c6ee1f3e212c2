"""A process of the unique-value concurrency tests (tests/move/test_unique_concurrency.py).

Usage: python tests/move/unique_driver.py HOT COLD ROLE ARGS... with the test settings (HOTCOLD_TEST_SUBPROCESS=1):

* ``move to_cold|to_hot BATCH``: ``migrate_cold`` or ``restore_hot --all`` of accounts.Customer;
* ``create PREFIX N``: create customers ``PREFIX<i>@example.com`` (i random below N) through the tiered
  manager until the file STOP exists; prints how many it created (the keys);
* ``rename PREFIX N``: set cold customers' email to ``PREFIX<i>@example.com`` (a save of a row loaded from
  cold) until STOP exists; prints how many saves succeeded.
* ``save-one PK EMAIL``: one save of cold customer PK with EMAIL; ``update-one PK EMAIL``: the same as a
  ``QuerySet.update()`` of cold; ``create-one EMAIL``: one create of EMAIL. Each prints ``ready`` before
  its write, then ``written`` or ``refused <error class>``.

A looping writer prints ``ready`` once Django is up and its first write is done.
"""
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import IntegrityError, OperationalError  # noqa: E402

from accounts.models import Customer  # noqa: E402

hot, cold, role, *args = sys.argv[1:]
settings.TIERING = {**settings.TIERING, "HOT": hot, "COLD": cold}
stop = os.environ["UNIQUE_STOP_FILE"]

if role == "move":
    direction, batch = args
    command = ["migrate_cold"] if direction == "to_cold" else ["restore_hot", "--all"]
    call_command(*command, "--model", "accounts.Customer", "--no-input", "--batch-size", batch, verbosity=0)
    print("moved", flush=True)
    sys.exit(0)

if role in ("save-one", "update-one", "create-one"):
    row = Customer.objects.cold().get(pk=args[0]) if role == "save-one" else Customer(name="writer")
    print("ready", flush=True)
    row.email = args[-1]
    try:
        if role == "update-one":
            Customer.objects.cold().filter(pk=args[0]).update(email=args[-1])
        else:
            row.save()
    except (IntegrityError, OperationalError) as exc:
        print("refused", type(exc).__name__, flush=True)
    else:
        print("written", flush=True)
    sys.exit(0)

prefix, n = args[0], int(args[1])
rng, done, tries, parent = random.Random(os.getpid()), [], 0, os.getppid()
while (not os.path.exists(stop) or tries < 2) and os.getppid() == parent:  # the test's end, or its death
    tries += 1
    email = f"{prefix}{rng.randrange(n)}@example.com"
    try:
        if role == "create":
            done.append(Customer.objects.create(email=email, name="writer").pk)
        else:
            row = Customer.objects.cold().order_by("?").first()
            if row is not None:
                row.email = email
                row.save(update_fields=["email"])
                if row._state.db == cold:
                    done.append(row.pk)
    except (IntegrityError, OperationalError):  # the value is taken (or a deadlock/busy victim): as one database
        pass
    if tries == 1:
        print("ready", flush=True)
print("done", " ".join(map(str, done)), flush=True)
