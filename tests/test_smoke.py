import pytest

from accounts.models import Customer


@pytest.mark.django_db(databases="__all__")
def test_tables_in_both_tiers(tiers):
    Customer.objects.using(tiers.cold).create(email="c@example.com", name="cold")
    Customer.objects.create(email="h@example.com", name="hot")
    assert Customer.objects.count() == 2
    assert Customer.objects.hot().get().name == "hot"
