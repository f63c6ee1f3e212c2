"""The tiering dashboard: where rows live, what the next run moves, what runs did.

Server-rendered pages with inline SVG charts (no JavaScript). Access: anonymous
users are sent to the login page; a logged-in user needs ``is_staff`` and
``tiering.view_migrationrun`` to see the pages and ``tiering.move_data`` for
"Run now" (403 otherwise). A GET never moves data: "Run now" shows the
dry-run plan and a form; only its POST (with CSRF) starts a run. Counts are
pluralised and grouped, costs carry ``TIERING["CURRENCY"]``, times show the
current time zone, and the next run is the beat crontab's own next match.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods

from . import move, overdue, schedule, schema
from .analysis import ModelFigures, analyze, batch_seconds, price
from .conf import tiering_settings
from .models import MOVE_PERMISSION, Direction, MigrationRun
from .move import undo
from .registry import TieredModel, registry
from .text import human_bytes, money

VIEW_PERMISSION = "tiering.view_migrationrun"
CHART_DAYS = 14
RECENT_RUNS = 20


def staff_permission_required(perm: str) -> Callable:
    """Anonymous -> login page; logged in without staff status or ``perm`` -> 403."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not (request.user.is_active and request.user.is_staff and request.user.has_perm(perm)):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def _tiered_or_404(label: str) -> TieredModel:
    try:
        return registry.by_label(label)
    except LookupError as exc:
        raise Http404(str(exc)) from None


# ------------------------------------------------------------------ pages
@staff_permission_required(VIEW_PERMISSION)
@require_http_methods(["GET", "HEAD"])
def dashboard(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    schedules = schedule.next_runs(now)
    cards = [card(analyze(tiered, now=now, histograms=False), schedules) for tiered in registry]
    runs = list(MigrationRun.objects.using(tiering_settings.HOT).order_by("-started_at", "-id")[:RECENT_RUNS])
    context = {
        "cards": cards,
        "overdue": overdue.overdue(now, send=True),
        "drift": {label: lines for label, lines in ((t.label, schema.drift_lines(t)) for t in registry) if lines},
        "runs": runs,
        "chart": moved_per_day_chart(now),
        "can_move": request.user.has_perm(MOVE_PERMISSION),
        "hot_alias": tiering_settings.HOT,
        "cold_alias": tiering_settings.COLD,
        "prices": {tier: money(price(tier), tiering_settings.CURRENCY) for tier in ("hot", "cold")},
    }
    return render(request, "tiering/dashboard.html", context)


@staff_permission_required(VIEW_PERMISSION)
@require_http_methods(["GET", "HEAD"])
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(MigrationRun.objects.using(tiering_settings.HOT), pk=pk)
    batches = [
        {"batch": b, "seconds": batch_seconds(b), "bytes": human_bytes(b.bytes),
         "rows_per_second": (b.rows / batch_seconds(b)) if batch_seconds(b) else 0}
        for b in run.batch_set.all().order_by("seq")
    ]
    conflicts = list(run.unique_conflicts.all())  # rows a restore left in cold: their unique value is taken in hot
    throttled = sum(item["batch"].throttled_seconds for item in batches)
    undo_of = (run.selection or {}).get("undo_run") if isinstance(run.selection, dict) else None
    return render(request, "tiering/run_detail.html", {
        "run": run, "batches": batches, "bytes": human_bytes(run.bytes), "undo_of": undo_of,
        "throttled": throttled, "conflicts": conflicts,
        "can_undo": request.user.has_perm(MOVE_PERMISSION) and run.direction == Direction.TO_COLD and run.rows > 0})


@staff_permission_required(MOVE_PERMISSION)
@require_http_methods(["GET", "HEAD", "POST"])
def undo_run(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: how many rows of run ``pk`` would go back to hot, and a confirmation form. POST: restore them
    (``restore_hot --run``), in this request or queued like "Run now". 409 for a run that cannot be undone."""
    run = get_object_or_404(MigrationRun.objects.using(tiering_settings.HOT), pk=pk)
    try:
        tiered = undo.undoable(run)
        keys = undo.keys(run)
    except undo.NotUndoable as exc:
        return render(request, "tiering/undo_run.html", {"run": run, "error": str(exc)}, status=409)
    if not keys:
        error = _("Run %(run)s moved no row that is still cold because of it: nothing to undo.") % {"run": run.pk}
        return render(request, "tiering/undo_run.html", {"run": run, "error": error}, status=409)
    if request.method != "POST":
        plan = move.plan(tiered, Direction.TO_HOT, pks=keys)
        return render(request, "tiering/undo_run.html", {
            "run": run, "plan": plan, "plan_bytes": human_bytes(plan.bytes),
            "in_process": tiering_settings.RUN_IN_PROCESS})
    if not tiering_settings.RUN_IN_PROCESS:
        from .tasks import restore  # Celery is needed only where runs are queued

        result = restore.delay(tiered.label, undo_run=run.pk)
        messages.success(request, _("Undo of run #%(run)s queued (task %(task)s).")
                         % {"run": run.pk, "task": result.id})
        return redirect("tiering:run", run.pk)
    try:
        done = move.move(tiered, Direction.TO_HOT, pks=keys, trigger="dashboard", record={"undo_run": run.pk})
    except (move.LockHeld, schema.SchemaDrift) as exc:
        messages.error(request, _("Not started: %(reason)s") % {"reason": exc})
        return redirect("tiering:run", run.pk)
    except move.MoveError as exc:
        messages.error(request, _("The run failed: %(reason)s") % {"reason": exc})
        return redirect("tiering:run", exc.run.pk if exc.run is not None else run.pk)
    if done is None:
        messages.info(request, _("Nothing to undo: no row of run %(run)s is still cold.") % {"run": run.pk})
        return redirect("tiering:run", run.pk)
    messages.success(request, ngettext(
        "Run #%(run)s undid run #%(undone)s: %(rows)s row moved back to hot.",
        "Run #%(run)s undid run #%(undone)s: %(rows)s rows moved back to hot.", done.rows,
    ) % {"run": done.pk, "undone": run.pk, "rows": grouped(done.rows)})
    return redirect("tiering:run", done.pk)


@staff_permission_required(MOVE_PERMISSION)
@require_http_methods(["GET", "HEAD", "POST"])
def run_now(request: HttpRequest, label: str) -> HttpResponse:
    """GET: the dry-run plan and a confirmation form (disabled when nothing would move). POST: start the
    archive run; with nothing to move none is started or queued, and none is recorded."""
    tiered = _tiered_or_404(label)
    if request.method != "POST":
        plan = move.plan(tiered, Direction.TO_COLD)
        context = {
            "tiered": tiered,
            "policy": tiered.policy.describe(),
            "plan": plan,
            "plan_bytes": human_bytes(plan.bytes),
            "in_process": tiering_settings.RUN_IN_PROCESS,
        }
        return render(request, "tiering/run_now.html", context)
    if tiering_settings.RUN_IN_PROCESS:
        try:
            run = move.move(tiered, Direction.TO_COLD, trigger="dashboard")
        except (move.LockHeld, schema.SchemaDrift) as exc:
            messages.error(request, _("Not started: %(reason)s") % {"reason": exc})
            return redirect("tiering:dashboard")
        except move.MoveError as exc:
            messages.error(request, _("The run failed: %(reason)s") % {"reason": exc})
            return redirect("tiering:run", exc.run.pk) if exc.run is not None else redirect("tiering:dashboard")
        if run is None:
            messages.info(request, nothing_to_move(tiered))
            return redirect("tiering:dashboard")
        messages.success(request, ngettext(
            "Run #%(run)s of %(model)s: %(state)s, %(rows)s row moved.",
            "Run #%(run)s of %(model)s: %(state)s, %(rows)s rows moved.", run.rows,
        ) % {"run": run.pk, "model": tiered.label, "state": run.get_state_display(), "rows": grouped(run.rows)})
        return redirect("tiering:run", run.pk)
    if not move.has_work(tiered, Direction.TO_COLD):
        messages.info(request, nothing_to_move(tiered))
        return redirect("tiering:dashboard")
    from .tasks import archive_model  # Celery is needed only where runs are queued

    result = archive_model.delay(tiered.label)
    messages.success(request, _("Archive run of %(model)s queued (task %(task)s).")
                     % {"model": tiered.label, "task": result.id})
    return redirect("tiering:dashboard")


# ------------------------------------------------------------------ helpers
def grouped(number: int | float) -> str:
    """A count with the active locale's thousands separator ('1,234'), whatever USE_THOUSAND_SEPARATOR says."""
    return number_format(number, force_grouping=True)


def nothing_to_move(tiered: TieredModel) -> str:
    return _("Nothing to move: no row of %(model)s is eligible under its policy now, so no run was started.") % {
        "model": tiered.label}


def card(figures: ModelFigures, schedules: dict[str, schedule.NextRun] | None) -> dict[str, Any]:
    """Everything one model's card shows, with its distribution bar in SVG units. ``schedules`` is None when
    the next runs are unknown (django-celery-beat not installed)."""
    width = 300
    total = figures.total_rows
    hot_width = round(width * figures.hot.rows / total, 1) if total else 0
    currency = tiering_settings.CURRENCY
    return {
        "f": figures,
        "hot_bytes": human_bytes(figures.hot.bytes),
        "cold_bytes": human_bytes(figures.cold.bytes),
        "backlog_bytes": human_bytes(figures.backlog_bytes),
        "hot_cost": money(figures.hot.monthly_cost, currency),
        "cold_cost": money(figures.cold.monthly_cost, currency),
        "saving": money(figures.saving_monthly, currency),
        "cold_percent": round(figures.cold_share * 100, 1),
        "bar": {"width": width, "hot": hot_width, "cold": round(width - hot_width, 1) if total else 0},
        "schedule_known": schedules is not None,
        "next_run": (schedules or {}).get(figures.model.lower()),
        "can_run": bool(figures.backlog_rows),
    }


def moved_per_day_chart(now: datetime, days: int = CHART_DAYS) -> dict[str, Any]:
    """Stacked bars of rows moved per day and direction, in SVG coordinates."""
    today = timezone.localdate(now)
    first = today - timedelta(days=days - 1)
    since = now - timedelta(days=days + 1)
    per_day: dict[Any, dict[str, int]] = defaultdict(lambda: {Direction.TO_COLD: 0, Direction.TO_HOT: 0})
    rows = MigrationRun.objects.using(tiering_settings.HOT).filter(started_at__gte=since, rows__gt=0)
    for started_at, direction, count in rows.values_list("started_at", "direction", "rows"):
        day = timezone.localtime(started_at).date()
        if day >= first:
            per_day[day][direction] += count
    peak = max((sum(v.values()) for v in per_day.values()), default=0)
    height, bar, gap, top = 120, 28, 8, 14
    bars = []
    for i in range(days):
        day = first + timedelta(days=i)
        cold = per_day[day][Direction.TO_COLD] if day in per_day else 0
        hot = per_day[day][Direction.TO_HOT] if day in per_day else 0
        cold_h = round(height * cold / peak, 1) if peak else 0
        hot_h = round(height * hot / peak, 1) if peak else 0
        x = i * (bar + gap) + gap
        bars.append({
            "day": day, "label": day.strftime("%m-%d"), "x": x, "text_x": x + bar / 2,
            "to_cold": cold, "to_hot": hot,
            "cold_y": top + height - cold_h, "cold_h": cold_h,
            "hot_y": top + height - cold_h - hot_h, "hot_h": hot_h,
        })
    return {
        "bars": bars, "peak": peak, "width": days * (bar + gap) + gap, "height": height + top + 24,
        "bar": bar, "base_y": top + height, "label_y": top + height + 16,
        "total": sum(b["to_cold"] + b["to_hot"] for b in bars),
    }
