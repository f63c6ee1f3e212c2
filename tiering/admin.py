"""Admin for tiered models and for the ledger.

``TieredModelAdmin`` lists both tiers through the tiered queryset: the
paginator's ``count()`` and page slice are answered by ``TieredQuerySet``
(counts per tier, slice pushed down to each tier), so no tier is loaded
whole. It adds a "tier" column and filter, a distribution summary above the
list, and the "Move to cold" / "Restore to hot" actions, which need
``tiering.move_data``, confirm with counts first, and run through the mover so
that each leaves a MigrationRun. Facet counts and the date hierarchy add up
both tiers (``TieredChangeList``, ``templatetags/tiering_admin.py``).

No admin page moves or touches a row: the change, history and delete pages
find it pinned to its tier (so saving a cold row writes it back to cold), and
keys to other tiered models are looked up the same way. Only with
``TIERING["ADMIN_PROMOTES_ON_VIEW"]`` does opening a change page read the row
through the tiered ``get()``, promoting it as the application would.
"""
from __future__ import annotations

from functools import partial
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.filters import FacetsMixin
from django.contrib.admin.utils import NestedObjects, quote, unquote
from django.contrib.admin.views.main import ChangeList
from django.contrib.admin.widgets import ForeignKeyRawIdWidget
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.html import format_html
from django.utils.text import Truncator, capfirst
from django.utils.translation import ngettext

from . import move
from .analysis import analyze, batch_seconds
from .conf import tiering_settings
from .models import MOVE_PERMISSION, Direction, MigrationBatch, MigrationRun, TierLock
from .move import selection
from .registry import registry
from .text import human_bytes


def in_tier(queryset: QuerySet, alias: str) -> QuerySet:
    """The rows of ``queryset`` held in tier ``alias``. A queryset already pinned to the other tier (the
    tier filter's) has none there: ``.using()`` alone would re-point it and read the other tier's rows."""
    if queryset.is_tiered:
        return queryset.using(alias)
    return queryset if queryset.db == alias else queryset.none()


def find_in_tiers(queryset: QuerySet, **lookup: Any) -> Any:
    """``get(**lookup)`` in hot, then cold, each read pinned to its tier: unlike the tiered ``get()`` it
    neither promotes a cold row (promote_on_access) nor records an access."""
    for alias in tiering_settings.aliases:
        try:
            return in_tier(queryset, alias).get(**lookup)
        except queryset.model.DoesNotExist:
            continue
    raise queryset.model.DoesNotExist(f"{queryset.model._meta.object_name} matching query does not exist.")


class TieredModelChoiceField(forms.ModelChoiceField):
    """A foreign key to a tiered model, validated without promoting or touching the related row."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        self.validate_no_null_characters(value)
        key = self.to_field_name or "pk"
        try:
            if isinstance(value, self.queryset.model):
                value = getattr(value, key)
            return find_in_tiers(self.queryset, **{key: value})
        except (ValueError, TypeError, self.queryset.model.DoesNotExist, ValidationError):
            raise ValidationError(self.error_messages["invalid_choice"], code="invalid_choice",
                                  params={"value": value}) from None


class TieredRawIdWidget(ForeignKeyRawIdWidget):
    """The raw id widget's label of a row of a tiered model, read without promoting or touching it."""

    def label_and_url_for_value(self, value):
        model = self.rel.model
        try:
            obj = find_in_tiers(model._default_manager.all(), **{self.rel.get_related_field().name: value})
        except (ValueError, model.DoesNotExist, ValidationError):
            return "", ""
        try:
            url = reverse(f"{self.admin_site.name}:{obj._meta.app_label}_{obj._meta.model_name}_change",
                          args=(obj.pk,))
        except NoReverseMatch:
            url = ""  # no admin for the related model
        return Truncator(obj).words(14), url


class TierFilter(admin.SimpleListFilter):
    """Show one tier only; the list then reads that alias alone."""

    title = "tier"
    parameter_name = "tier"

    def lookups(self, request, model_admin):
        return [("hot", "hot"), ("cold", "cold")]

    def queryset(self, request, queryset):
        if self.value() == "hot":
            return in_tier(queryset, tiering_settings.HOT)
        if self.value() == "cold":
            return in_tier(queryset, tiering_settings.COLD)
        return queryset


def facet_counts(spec: FacetsMixin, changelist: ChangeList) -> dict[str, int]:
    """``spec.get_facet_queryset()`` for a tiered list, each count taken by the tiered ``count()``.

    Django counts all choices in one ``aggregate()`` of ``Count(pk, filter=Q(...))``; a tiered queryset
    runs that aggregate in each tier. A list filter's choice is ``Q(pk__in=<its queryset>)``, and the tier
    filter's queryset is pinned to one alias, so the other tier refused it ("Subqueries aren't allowed
    across different databases"): a list filter's choice counts its own queryset. A field filter keeps
    Django's single aggregate; one through a relation to another tiered model is answered on the key by
    the tiered ``aggregate()`` (tiering/relations.py).
    """
    filtered = changelist.get_queryset(spec.request, exclude_parameters=spec.expected_parameters())
    if isinstance(spec, admin.SimpleListFilter):
        original = spec.used_parameters.get(spec.parameter_name)
        counts = {}
        for i, (value, _title) in enumerate(spec.lookup_choices):
            spec.used_parameters[spec.parameter_name] = value
            chosen = spec.queryset(spec.request, filtered)
            if chosen is not None:
                counts[f"{i}__c"] = chosen.count()
        spec.used_parameters[spec.parameter_name] = original
        return counts
    return filtered.aggregate(**spec.get_facet_counts(changelist.pk_attname, filtered))


class TieredChangeList(ChangeList):
    """The changelist of a tiered model: facet counts that add up across both tiers."""

    def get_filters(self, request):
        specs, *rest = super().get_filters(request)
        for spec in specs:
            if isinstance(spec, FacetsMixin):
                spec.get_facet_queryset = partial(facet_counts, spec)
        return specs, *rest


def tier_of(obj: Any) -> str:
    """'hot' or 'cold' for an instance read from one of the tiers."""
    alias = obj._state.db
    if alias == tiering_settings.COLD:
        return "cold"
    if alias == tiering_settings.HOT:
        return "hot"
    return alias or "?"


class TieredModelAdmin(admin.ModelAdmin):
    """Mix in (or subclass) for the ModelAdmin of a tiered model."""

    change_list_template = "admin/tiering/tiered_change_list.html"
    actions = ["move_to_cold", "restore_to_hot"]

    @property
    def tiered(self):
        return registry.get(self.model)

    # ------------------------------------------------------------ changelist
    @admin.display(description="tier")
    def tier(self, obj: Any) -> str:
        name = tier_of(obj)
        return format_html('<span class="tier tier-{}">{}</span>', name, name)

    def get_list_display(self, request):
        fields = list(super().get_list_display(request))
        return fields if "tier" in fields else [*fields, "tier"]

    def get_list_filter(self, request):
        filters = list(super().get_list_filter(request))
        return filters if TierFilter in filters else [*filters, TierFilter]

    def get_changelist(self, request, **kwargs):
        return TieredChangeList

    def changelist_view(self, request, extra_context=None):
        extra_context = dict(extra_context or {})
        figures = analyze(self.tiered, detail=False)
        extra_context["tier_summary"] = {
            "figures": figures,
            "hot_bytes": human_bytes(figures.hot.bytes),
            "cold_bytes": human_bytes(figures.cold.bytes),
            "cold_percent": round(figures.cold_share * 100, 1),
        }
        return super().changelist_view(request, extra_context)

    # ------------------------------------------------------------ change page
    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None):
        """Find the row in hot, then cold, without promote-on-access or touching it (every page that opens
        one row: change, history, delete)."""
        queryset = self.get_queryset(request)
        model = queryset.model
        field = model._meta.pk if from_field is None else model._meta.get_field(from_field)
        try:
            return find_in_tiers(queryset, **{field.name: field.to_python(object_id)})
        except (model.DoesNotExist, ValidationError, ValueError):
            return None

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if tiering_settings.ADMIN_PROMOTES_ON_VIEW and request.method == "GET":
            self.read_as_the_application_does(request, unquote(object_id))
        return super().change_view(request, object_id, form_url, extra_context)

    def read_as_the_application_does(self, request: HttpRequest, object_id: str) -> None:
        """TIERING['ADMIN_PROMOTES_ON_VIEW']: opening the change page reads the row through the tiered
        ``get()``, which promotes a cold row of a promote_on_access policy and records the access; the
        page then finds the row where that left it."""
        queryset = self.get_queryset(request)
        try:
            queryset.get(pk=queryset.model._meta.pk.to_python(object_id))
        except (queryset.model.DoesNotExist, ValidationError, ValueError):
            pass  # the change page answers for a missing row

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        """A key to another tiered model: its row is found in either tier, never promoted or touched."""
        if registry.get(db_field.related_model) is not None:
            kwargs.setdefault("form_class", TieredModelChoiceField)
            if db_field.name in self.raw_id_fields and "widget" not in kwargs:
                kwargs["widget"] = TieredRawIdWidget(db_field.remote_field, self.admin_site, using=kwargs.get("using"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_formset_kwargs(self, request, obj, inline, prefix):
        """Inline child rows are read from the tier of their parent."""
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        alias = getattr(getattr(obj, "_state", None), "db", None)
        if obj is not None and obj.pk is not None and alias in tiering_settings.aliases:
            kwargs["queryset"] = kwargs["queryset"].using(alias)
        return kwargs

    def get_deleted_objects(self, objs, request):
        """Django's delete summary collects related rows in the hot alias; a cold row's children are in
        cold. Collect each tier's rows in their own tier (the delete itself already runs there)."""
        by_tier: dict[str, list] = {}
        for obj in objs:
            by_tier.setdefault(obj._state.db or tiering_settings.HOT, []).append(obj)
        to_delete, model_count, perms_needed, protected = [], {}, set(), []

        def describe(obj):
            opts = obj._meta
            if not self.admin_site.is_registered(type(obj)):
                return f"{capfirst(opts.verbose_name)}: {obj}"
            if not self.admin_site.get_model_admin(type(obj)).has_delete_permission(request, obj):
                perms_needed.add(opts.verbose_name)
            try:
                link = reverse(f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change",
                               args=(quote(obj.pk),))
            except NoReverseMatch:
                return f"{capfirst(opts.verbose_name)}: {obj}"
            return format_html('{}: <a href="{}">{}</a>', capfirst(opts.verbose_name), link, obj)

        for alias, group in by_tier.items():
            collector = NestedObjects(using=alias, origin=group)
            collector.collect(group)
            to_delete += collector.nested(describe)
            protected += [describe(obj) for obj in collector.protected]
            for model, found in collector.model_objs.items():
                name = model._meta.verbose_name_plural
                model_count[name] = model_count.get(name, 0) + len(found)
        return to_delete, model_count, perms_needed, protected

    # --------------------------------------------------------------- actions
    def has_move_data_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(MOVE_PERMISSION)

    @admin.action(description="Move to cold", permissions=["move_data"])
    def move_to_cold(self, request: HttpRequest, queryset: QuerySet):
        return self._move(request, queryset, Direction.TO_COLD)

    @admin.action(description="Restore to hot", permissions=["move_data"])
    def restore_to_hot(self, request: HttpRequest, queryset: QuerySet):
        return self._move(request, queryset, Direction.TO_HOT)

    def _move(self, request: HttpRequest, queryset: QuerySet, direction: str):
        tiered = self.tiered
        now = timezone.now()
        source = in_tier(queryset, tiering_settings.HOT if direction == Direction.TO_COLD else tiering_settings.COLD)
        pks = list(source.values_list("pk", flat=True))
        selected = queryset.count()
        if direction == Direction.TO_COLD:
            eligible = source.filter(selection.eligible_q(tiered, direction, now)).count()
        else:
            eligible = len(pks)
        if request.POST.get("confirm") != "yes":
            plan = move.plan(tiered, direction, pks=pks, now=now) if pks else None
            context = {
                **self.admin_site.each_context(request),
                "title": "Move to cold" if direction == Direction.TO_COLD else "Restore to hot",
                "opts": self.model._meta,
                "direction": direction,
                "to_cold": direction == Direction.TO_COLD,
                "action": "move_to_cold" if direction == Direction.TO_COLD else "restore_to_hot",
                "selected": selected,
                "in_source": len(pks),
                "already": selected - len(pks),
                "eligible": eligible,
                "plan": plan,
                "plan_bytes": human_bytes(plan.bytes) if plan else "0 B",
                "pks": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
                "select_across": request.POST.get("select_across", "0"),
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                "policy": tiered.policy.describe(),
            }
            return TemplateResponse(request, "admin/tiering/move_confirmation.html", context)
        if not pks:
            self.message_user(request, "Nothing to move: no selected row is in the source tier.", messages.WARNING)
            return None
        try:
            run = move.move(tiered, direction, pks=pks, trigger="admin")
        except move.LockHeld as exc:
            self.message_user(request, f"Not started: {exc}", messages.ERROR)
            return None
        except move.MoveError as exc:
            self.message_user(request, f"The move failed: {exc}", messages.ERROR)
            return None
        if run is None:
            self.message_user(request, "Nothing to move: no selected row is eligible under the policy now.",
                              messages.WARNING)
            return None
        url = reverse("tiering:run", args=[run.pk])
        moved = ngettext("%(rows)s row moved.", "%(rows)s rows moved.", run.rows) % {
            "rows": number_format(run.rows, force_grouping=True)}
        self.message_user(
            request, format_html('Run <a href="{}">#{}</a> {}: {}', url, run.pk, run.get_state_display(), moved),
            messages.SUCCESS,
        )
        return None


# ------------------------------------------------------------------ ledger
class ReadOnlyAdmin(admin.ModelAdmin):
    """The ledger is history: viewable, never edited by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class BatchTimingColumns:
    """The timing columns shared by the batch inline and the batch admin."""

    @admin.display(description="seconds")
    def seconds(self, batch: MigrationBatch) -> str:
        return f"{batch_seconds(batch):.3f}"

    @admin.display(description="rows/s")
    def rows_per_second(self, batch: MigrationBatch) -> str:
        seconds = batch_seconds(batch)
        return f"{batch.rows / seconds:,.0f}" if seconds else "-"


class MigrationBatchInline(BatchTimingColumns, admin.TabularInline):
    model = MigrationBatch
    fields = ["seq", "state", "rows", "child_rows", "bytes", "seconds", "rows_per_second", "key_low", "key_high",
              "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False



@admin.register(MigrationRun)
class MigrationRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id", "model_label", "direction", "state", "trigger", "path", "rows", "child_rows", "batches",
        "duration_display", "rows_per_second_display", "started_at", "error_short",
    ]
    list_filter = ["model_label", "direction", "state", "trigger", "path"]
    date_hierarchy = "started_at"
    search_fields = ["model_label", "error", "owner"]
    inlines = [MigrationBatchInline]

    @admin.display(description="seconds", ordering="finished_at")
    def duration_display(self, run: MigrationRun) -> str:
        return f"{run.duration:.2f}"

    @admin.display(description="rows/s")
    def rows_per_second_display(self, run: MigrationRun) -> str:
        return f"{run.rows_per_second:,.0f}"

    @admin.display(description="error")
    def error_short(self, run: MigrationRun) -> str:
        return (run.error.splitlines() or [""])[0][:80]


@admin.register(MigrationBatch)
class MigrationBatchAdmin(BatchTimingColumns, ReadOnlyAdmin):
    list_display = ["id", "run", "seq", "state", "rows", "child_rows", "bytes", "seconds", "rows_per_second",
                    "started_at"]
    list_filter = ["run__model_label", "run__direction", "state"]
    list_select_related = ["run"]


@admin.register(TierLock)
class TierLockAdmin(ReadOnlyAdmin):
    list_display = ["name", "owner", "run", "acquired_at", "heartbeat_at"]

    def has_delete_permission(self, request, obj=None):
        # A lock left by a dead process can be removed by a superuser.
        return request.user.is_superuser
