"""HSDS 3.0 representations of directory rows."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from svc_matching.directory.models import (
    Location, Organization, Schedule, Service, ServiceAtLocation, ServiceAttribute, ServiceCapacity, TaxonomyTerm,
)

HSDS_VERSION = "3.0"
USCC_SCHEME = "CN-USCC"


def term_out(t: TaxonomyTerm) -> dict[str, Any]:
    return {"id": t.id, "code": t.code, "name": t.name, "description": t.description or t.name_en,
            "parent_id": t.parent_id, "taxonomy": t.taxonomy, "language": "zh", "taxonomy_id": None,
            "term_uri": None}


def location_out(loc: Location) -> dict[str, Any]:
    return {"id": loc.id, "location_type": loc.location_type, "organization_id": loc.organization_id,
            "name": loc.name, "latitude": loc.latitude, "longitude": loc.longitude,
            "external_identifier": loc.place_code, "external_identifier_type": "GB/T 2260+网格" if loc.place_code else None,
            "addresses": [{"address_1": loc.address, "city": None, "region": None, "state_province": "",
                           "postal_code": "", "country": "CN", "address_type": "physical"}] if loc.address else []}


def organization_out(org: Organization, *, services: list[dict] | None = None,
                     locations: list[dict] | None = None) -> dict[str, Any]:
    out = {"id": org.id, "name": org.name, "alternate_name": org.alternate_name, "description": org.description,
           "email": org.email, "website": org.website, "legal_status": org.legal_status,
           "phones": [{"number": org.phone}] if org.phone else [],
           "organization_identifiers": ([{"identifier_scheme": USCC_SCHEME, "identifier_type": "统一社会信用代码",
                                          "identifier": org.uscc}] if org.uscc else []),
           "metadata": [{"last_action_date": org.updated_at.isoformat(), "last_action_type": "update"}]}
    if services is not None:
        out["services"] = services
    if locations is not None:
        out["locations"] = locations
    return out


async def service_out(session: AsyncSession, svc: Service, *, full: bool = True,
                      org: Organization | None = None) -> dict[str, Any]:
    terms = list((await session.execute(
        select(TaxonomyTerm).join(ServiceAttribute, ServiceAttribute.taxonomy_term_id == TaxonomyTerm.id)
        .where(ServiceAttribute.service_id == svc.id).order_by(TaxonomyTerm.taxonomy, TaxonomyTerm.code))).scalars())
    cap = (await session.execute(select(ServiceCapacity).where(ServiceCapacity.service_id == svc.id))).scalar_one_or_none()
    out: dict[str, Any] = {
        "id": svc.id, "organization_id": svc.organization_id, "name": svc.name,
        "alternate_name": svc.alternate_name, "description": svc.description, "status": svc.status,
        "fees_description": svc.fees_description or {"free": "免费", "low_fee": "低偿", "paid": "有偿"}[svc.fees],
        "eligibility_description": svc.eligibility_description, "minimum_age": svc.minimum_age,
        "maximum_age": svc.maximum_age,
        "attributes": [{"id": f"{svc.id}:{t.id}", "link_id": svc.id, "link_type": t.taxonomy, "link_entity": "service",
                        "taxonomy_term_id": t.id, "taxonomy_term": term_out(t), "value": t.code, "label": t.name}
                       for t in terms],
        "capacities": ([{"id": cap.id, "service_id": svc.id, "unit": {"name": cap.unit}, "available": None,
                         "maximum": cap.maximum, "description": cap.description, "updated": cap.updated.isoformat()}]
                       if cap else []),
        "service_areas": ([{"name": c, "extent_type": "place_code", "extent": c} for c in svc.service_area_codes or []]
                          + ([{"name": f"半径 {svc.service_area_radius_m:g} 米", "extent_type": "radius_m",
                               "extent": str(svc.service_area_radius_m)}] if svc.service_area_radius_m else [])),
        "metadata": [{"last_action_date": svc.updated_at.isoformat(), "last_action_type": "update"}],
    }
    if full:
        scheds = list((await session.execute(select(Schedule).where(Schedule.service_id == svc.id)
                                             .order_by(Schedule.id))).scalars())
        out["schedules"] = [{"id": s.id, "service_id": svc.id, "freq": s.freq, "byday": s.byday,
                             "opens_at": s.opens_at, "closes_at": s.closes_at, "timezone": s.timezone,
                             "description": s.description} for s in scheds]
        sals = (await session.execute(select(ServiceAtLocation, Location)
                                      .join(Location, Location.id == ServiceAtLocation.location_id)
                                      .where(ServiceAtLocation.service_id == svc.id)
                                      .order_by(ServiceAtLocation.id))).all()
        out["service_at_locations"] = [{"id": sal.id, "service_id": svc.id, "location_id": loc.id,
                                        "description": sal.description, "location": location_out(loc)}
                                       for sal, loc in sals]
        org = org or await session.get(Organization, svc.organization_id)
        out["organization"] = organization_out(org) if org else None
    return out
