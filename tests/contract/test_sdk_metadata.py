"""The SDK's metadata calls against the simulator: modules, fields of every module, users, org,
and the SDK's own field-metadata cache built with ``auto_refresh_fields``."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from zohocrmsdk.src.com.zoho.crm.api import HeaderMap, ParameterMap
from zohocrmsdk.src.com.zoho.crm.api.fields import FieldsOperations, GetFieldsParam
from zohocrmsdk.src.com.zoho.crm.api.fields import ResponseWrapper as FieldsWrapper
from zohocrmsdk.src.com.zoho.crm.api.modules import ModulesOperations
from zohocrmsdk.src.com.zoho.crm.api.modules import ResponseWrapper as ModulesWrapper
from zohocrmsdk.src.com.zoho.crm.api.org import OrgOperations
from zohocrmsdk.src.com.zoho.crm.api.org import ResponseWrapper as OrgWrapper
from zohocrmsdk.src.com.zoho.crm.api.record import GetRecordsParam, RecordOperations
from zohocrmsdk.src.com.zoho.crm.api.sdk_config import SDKConfig
from zohocrmsdk.src.com.zoho.crm.api.users import GetUsersParam, UsersOperations
from zohocrmsdk.src.com.zoho.crm.api.users import ResponseWrapper as UsersWrapper
from zohocrmsdk.src.com.zoho.crm.api.util import Choice

if TYPE_CHECKING:
    from conftest import SdkSession


def test_modules(sdk: SdkSession) -> None:
    """settings/modules parses into the SDK's Modules: names, labels, flags, generated_type."""
    wrapper = sdk.result(ModulesOperations().get_modules(ParameterMap(), HeaderMap()))
    assert isinstance(wrapper, ModulesWrapper)
    got = {m.get_api_name(): m for m in wrapper.get_modules()}
    org = sdk.sim.org
    assert list(got) == list(org.modules)
    for name, store in org.modules.items():
        module = got[name]
        meta = store.meta
        assert module.get_module_name() == meta.module_name
        assert module.get_plural_label() == meta.plural_label
        assert module.get_api_supported() is meta.api_supported
        assert sdk.plain(module.get_generated_type()) == meta.generated_type
        assert str(module.get_id()) == meta.id
        assert isinstance(module.get_modified_time(), datetime)


def test_fields_of_every_module(sdk: SdkSession) -> None:
    """settings/fields of every module parses into the SDK's Fields, types and all: data_type,
    json_type, picklist values, lookup targets."""
    for name, store in sdk.sim.org.modules.items():
        params = ParameterMap()
        params.add(GetFieldsParam.module, name)
        params.add(GetFieldsParam.type, Choice("all"))  # fields outside every layout too
        wrapper = sdk.result(FieldsOperations().get_fields(params))
        assert isinstance(wrapper, FieldsWrapper)
        got = {f.get_api_name(): f for f in wrapper.get_fields()}
        assert list(got) == [f.api_name for f in store.meta.fields]
        for meta in store.meta.fields:
            field = got[meta.api_name]
            assert sdk.plain(field.get_data_type()) == meta.data_type, (name, meta.api_name)
            assert str(field.get_id()) == meta.id
            assert field.get_field_label() == meta.field_label
            if meta.json_type is not None:
                assert sdk.plain(field.get_json_type()) == meta.json_type
            if meta.pick_list_values:
                values = [v.get_actual_value() for v in field.get_pick_list_values()]
                assert values == list(meta.pick_list_values)
            if meta.lookup_module:
                assert field.get_lookup().get_module().get_api_name() == meta.lookup_module


def test_users_and_org(sdk: SdkSession) -> None:
    """users?type=AllUsers and org parse into the SDK's Users and Org."""
    params = ParameterMap()
    params.add(GetUsersParam.type, "AllUsers")
    wrapper = sdk.result(UsersOperations().get_users(params, HeaderMap()))
    assert isinstance(wrapper, UsersWrapper)
    users = wrapper.get_users()
    # The org has more users than a page holds (200, the default per_page): the first page.
    first_page = sdk.sim.org.users[:200]
    assert len(sdk.sim.org.users) > 200
    assert [str(u.get_id()) for u in users] == [u.id for u in first_page]
    assert [u.get_email() for u in users] == [u.email for u in first_page]
    assert wrapper.get_info().get_count() == len(users)
    assert wrapper.get_info().get_more_records() is True
    org_wrapper = sdk.result(OrgOperations().get_organization())
    assert isinstance(org_wrapper, OrgWrapper)
    [org] = org_wrapper.get_org()
    assert org.get_time_zone() == sdk.sim.org.time_zone
    assert str(org.get_zgid()) == str(sdk.sim.org.info["zgid"])


def test_auto_refresh_fields_caches_every_module(make_sdk: Callable[..., SdkSession]) -> None:
    """With ``auto_refresh_fields`` the SDK reads settings/modules, then the fields of every
    API-supported module, into its resources file; a records call then works from that cache."""
    session = make_sdk(
        records=30, sdk_config=SDKConfig(auto_refresh_fields=True, pick_list_validation=False)
    )
    params = ParameterMap()
    params.add(GetRecordsParam.fields, "Last_Name,Owner")
    params.add(GetRecordsParam.converted, "both")  # Zoho's default leaves converted leads out
    response = RecordOperations("Leads").get_records(params, HeaderMap())
    wrapper = session.result(response)
    assert len(wrapper.get_data()) == session.sim.org.module("Leads").count()
    assert "/crm/v8/settings/modules" in session.paths()
    fetched = {r.query["module"] for r in session.sim.requests if r.path.endswith("/fields")}
    supported = {n for n, s in session.sim.org.modules.items() if s.meta.api_supported}
    assert fetched == supported
    [cache] = list((session.resource_path / "resources").glob("*.json"))
    cached = json.loads(cache.read_text())
    for name in supported:
        assert cached[name.lower()], name
    assert cached["leads"]["Last_Name"]["type"] == "String"
    assert cached["leads"]["Owner"]["type"].endswith("MinifiedUser")
