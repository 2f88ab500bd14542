"""The default billing set-up generated from the model catalog (design.md sections 1 and 4).

The seed's metric (``sum`` of ``tokens`` filtered by ``model`` and ``type``) lists every served
model, and the default plan prices every (model, type) pair, so no proxied token falls into
the unpriced default bucket by accident. Ids derive from names (uuid5), so a restart with the
same catalog rewrites the same records; the default metric and plan are owned by the config.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

import msgspec

from config import ModelSettings, Settings
from metering.errors import NotFound
from metering.models import (
    AggregationType,
    BillableMetric,
    Charge,
    ChargeFilter,
    ChargeModel,
    Interval,
    MetricFilter,
    Plan,
)
from metering.ports import Store

__all__ = ["default_metric", "default_plan", "ensure_default_catalog", "token_types"]

_NAMESPACE = uuid.UUID("5b0c1f53-6f3a-4a52-9a55-7e0f4bde2d11")
_MILLION = Decimal(1_000_000)


def _id(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, ":".join(parts)))


def token_types(settings: Settings) -> tuple[str, ...]:
    """The ``type`` values events carry: cached input is split out unless disabled."""
    if settings.metering.split_cached_input:
        return ("input", "cached_input", "output")
    return ("input", "output")


def _price_per_1m(model: ModelSettings, token_type: str) -> Decimal | None:
    if token_type == "input":
        return model.input_per_1m
    if token_type == "cached_input":
        return (
            model.input_per_1m if model.cached_input_per_1m is None else model.cached_input_per_1m
        )
    return model.output_per_1m


def _amount_text(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def default_metric(settings: Settings, created_at: datetime) -> BillableMetric:
    """The seed's billable metric, its filters listing every catalog model and token type."""
    m = settings.metering
    return BillableMetric(
        id=_id("metric", m.metric_code),
        code=m.metric_code,
        name=m.metric_name,
        description="Tokens proxied by tallygate, per model and token type.",
        aggregation_type=AggregationType.SUM,
        field_name=m.field_name,
        created_at=created_at,
        filters=(
            MetricFilter(key=m.model_property, values=tuple(sorted(settings.models))),
            MetricFilter(key=m.type_property, values=tuple(sorted(token_types(settings)))),
        ),
    )


def _charge_properties(settings: Settings, price_per_1m: Decimal) -> dict[str, object]:
    m = settings.metering
    if m.charge_model == "package":
        amount = price_per_1m * m.package_size / _MILLION
        return {"amount": _amount_text(amount), "package_size": m.package_size, "free_units": 0}
    return {"amount": _amount_text(price_per_1m / _MILLION)}


def default_plan(settings: Settings, metric: BillableMetric, created_at: datetime) -> Plan:
    """A plan with one charge on the metric and one priced filter per (model, type)."""
    m = settings.metering
    filters: list[ChargeFilter] = []
    for name in sorted(settings.models):
        model = settings.models[name]
        for token_type in token_types(settings):
            if model.kind == "embedding" and token_type != "input":
                continue
            price = _price_per_1m(model, token_type)
            if price is None:
                continue
            filters.append(
                ChargeFilter(
                    id=_id("charge_filter", m.plan_code, name, token_type),
                    values={m.model_property: (name,), m.type_property: (token_type,)},
                    properties=_charge_properties(settings, price),
                    invoice_display_name=f"{name} {token_type}",
                    created_at=created_at,
                )
            )
    charge = Charge(
        id=_id("charge", m.plan_code, m.metric_code),
        code=m.metric_code,
        billable_metric_id=metric.id,
        charge_model=ChargeModel(m.charge_model),
        # The default bucket (tokens of no catalog model) is priced at 0, as in the seed.
        properties=_charge_properties(settings, Decimal(0)),
        filters=tuple(filters),
        created_at=created_at,
    )
    return Plan(
        id=_id("plan", m.plan_code),
        code=m.plan_code,
        name=m.plan_name,
        interval=Interval(m.plan_interval),
        amount_cents=0,
        amount_currency=m.currency,
        description="Generated from tallygate's model catalog.",
        charges=(charge,),
        created_at=created_at,
    )


async def ensure_default_catalog(store: Store, settings: Settings, now: datetime) -> Plan:
    """Write the default metric and plan, keeping ids and creation times across restarts."""
    m = settings.metering
    try:
        existing_metric = await store.get_metric(code=m.metric_code)
    except NotFound:
        metric = default_metric(settings, now)
    else:
        metric = msgspec.structs.replace(
            default_metric(settings, existing_metric.created_at), id=existing_metric.id
        )
    await store.put_metric(metric)
    try:
        existing_plan = await store.get_plan(code=m.plan_code)
    except NotFound:
        plan = default_plan(settings, metric, now)
    else:
        plan = msgspec.structs.replace(
            default_plan(settings, metric, existing_plan.created_at), id=existing_plan.id
        )
    await store.put_plan(plan)
    return plan
