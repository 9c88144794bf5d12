"""Connection string parsing, value rules, precedence of sources and secret hygiene."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.config import (
    KNOWN_KEYS,
    APIType,
    InitiateOAuth,
    InstanceType,
    Region,
    Settings,
    Tuning,
    load_settings,
    parse_connection_string,
)
from connector.errors import ConfigError
from connector.redact import redact

LOOME = """Region=US;
InstanceType=Production;
InitiateOAuth=REFRESH;
OAuthClientId=1000.XXXXXXXXXXXXXXXXXXXXXXXXXXXXXX;
OAuthClientSecret=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx;
OAuthAccessToken=1000.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx;
OAuthRefreshToken=1000.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx;
Scope=ZohoCRM.modules.ALL,ZohoCRM.settings.ALL,ZohoCRM.users.ALL,ZohoCRM.org.ALL,
ZohoCRM.bulk.READ,ZohoCRM.coql.READ;
UseCOQL=false;
APIType=Bulk;
"""

SECRET = "s3cr3t-client-secret-value-42"
REFRESH = "1000.refresh-token-value.abcdef"
BASE = f"Region=EU;OAuthClientId=1000.CID;OAuthClientSecret={SECRET};OAuthRefreshToken={REFRESH};"


def load(text: str, **kwargs: object) -> Settings:
    return load_settings(text, environ={}, **kwargs).settings  # type: ignore[arg-type]


def test_loome_guide_example() -> None:
    values, warnings = parse_connection_string(LOOME)
    assert warnings == []
    assert values["Scope"] == (
        "ZohoCRM.modules.ALL,ZohoCRM.settings.ALL,ZohoCRM.users.ALL,ZohoCRM.org.ALL,"
        "ZohoCRM.bulk.READ,ZohoCRM.coql.READ"
    )
    s = load(LOOME)
    assert s.region is Region.US
    assert s.instance_type is InstanceType.PRODUCTION
    assert s.initiate_oauth is InitiateOAuth.REFRESH
    assert s.client_id == "1000.XXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
    assert s.client_secret is not None
    assert s.client_secret.get_secret_value() == "x" * 42
    assert s.scopes[-1] == "ZohoCRM.coql.READ" and len(s.scopes) == 6
    assert s.use_coql is False
    assert s.api_type is APIType.BULK
    assert s.api_version == "v8"
    assert s.token_cache_path is None
    assert s.tuning == Tuning()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("region=us", {"Region": "us"}),
        ("  REGION = EU ;  ", {"Region": "EU"}),
        ("Region=US;;;APIType=REST", {"Region": "US", "APIType": "REST"}),
        ("Region=US\n;\nAPIType\n=\nREST\n", {"Region": "US", "APIType": "REST"}),
        ("OAuthClientSecret='a;b=c';", {"OAuthClientSecret": "a;b=c"}),
        ('OAuthClientSecret="it""s";', {"OAuthClientSecret": 'it"s'}),
        ("OAuthClientSecret='it''s' ;Region=IN", {"OAuthClientSecret": "it's", "Region": "IN"}),
        ("APIDomain=http://127.0.0.1:8080/?a=b", {"APIDomain": "http://127.0.0.1:8080/?a=b"}),
        ("Scope= a.READ ,\n  b.READ,\r\n c.ALL ;", {"Scope": "a.READ,b.READ,c.ALL"}),
        ("oauth_client_id=1000.X", {"OAuthClientId": "1000.X"}),
        ("", {}),
    ],
)
def test_parse_table(text: str, expected: dict[str, str]) -> None:
    values, warnings = parse_connection_string(text)
    assert values == expected
    assert warnings == []


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("Region=US;Region=EU", "Region is given twice"),
        ("Region=US;region=EU", "Region is given twice"),
        ("Region=US;garbage", "'garbage', has no '='"),
        ("=US", "no key"),
        ("OAuthClientSecret='abc", "no closing"),
        ("OAuthClientSecret='abc' x;", "unexpected text"),
    ],
)
def test_parse_errors(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_connection_string(text)


def test_fragment_without_equals_never_echoes_a_secret() -> None:
    # An unquoted secret holding ';' splits into a fragment that is part of the secret.
    with pytest.raises(ConfigError) as info:
        parse_connection_string("OAuthClientSecret=abcdef;ghijklmnop;Region=US")
    assert "ghijklmnop" not in str(info.value)
    assert "quotes" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_connection_string("Region=US;OAuthRefreshToken 1000.zzzzzzzzzz")
    assert "1000.zzzzzzzzzz" not in str(info.value)
    assert "OAuthRefreshToken" in str(info.value)


def test_unknown_key_warns_with_suggestion() -> None:
    values, warnings = parse_connection_string("Region=US;OAuthRefeshToken=1000.abc.def;Colour=red")
    assert values == {"Region": "US"}
    assert any("did you mean OAuthRefreshToken?" in w for w in warnings)
    assert any("'Colour'" in w and "did you mean" not in w for w in warnings)
    # The misspelled key's value looks like a secret: it is masked from then on.
    assert "1000.abc.def" not in redact("value 1000.abc.def")


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("US", Region.US),
        ("europe", Region.EU),
        ("EU", Region.EU),
        ("India", Region.IN),
        ("in", Region.IN),
        ("Australia", Region.AU),
        ("AU", Region.AU),
        ("Japan", Region.JP),
        ("jp", Region.JP),
        ("China", Region.CN),
        ("CN", Region.CN),
        ("Canada", Region.CA),
        ("ca", Region.CA),
        ("SA", Region.SA),
        ("Saudi Arabia", Region.SA),
        ("UK", Region.UK),
        ("United Kingdom", Region.UK),
    ],
)
def test_region_names(raw: str, region: Region) -> None:
    assert load(BASE.replace("Region=EU", f"Region={raw}")).region is region


@pytest.mark.parametrize(
    ("extra", "attr", "value"),
    [
        ("InstanceType=Sandbox", "instance_type", InstanceType.SANDBOX),
        ("InstanceType=Development", "instance_type", InstanceType.DEVELOPER),
        ("InstanceType=developer", "instance_type", InstanceType.DEVELOPER),
        ("InstanceType=PRODUCTION", "instance_type", InstanceType.PRODUCTION),
        ("InitiateOAuth=GETANDREFRESH", "initiate_oauth", InitiateOAuth.GETANDREFRESH),
        ("UseCOQL=TRUE", "use_coql", True),
        ("UseCOQL=yes", "use_coql", True),
        ("UseCOQL=1", "use_coql", True),
        ("UseCOQL=no", "use_coql", False),
        ("UseCOQL=0", "use_coql", False),
        ("APIType=rest", "api_type", APIType.REST),
        ("APIType=BULK", "api_type", APIType.BULK),
        ("APIVersion=v7", "api_version", "v7"),
        ("AccountsServer=http://127.0.0.1:9/", "accounts_server", "http://127.0.0.1:9"),
        ("APIDomain=https://proxy.example/zoho/", "api_domain", "https://proxy.example/zoho"),
        ("OAuthSettingsLocation=/tmp/tok.json", "token_cache_path", Path("/tmp/tok.json")),
    ],
)
def test_value_rules(extra: str, attr: str, value: object) -> None:
    assert getattr(load(BASE + extra), attr) == value


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        ("Region=Mars", ["Region", "US", "EU", "UK"]),
        ("InstanceType=Staging", ["InstanceType", "Production", "Sandbox", "Development"]),
        ("InitiateOAuth=SOMETIMES", ["InitiateOAuth", "REFRESH", "OFF", "GETANDREFRESH"]),
        ("UseCOQL=maybe", ["UseCOQL", "true or false"]),
        ("APIType=SOAP", ["APIType", "Bulk", "REST"]),
        ("APIVersion=8", ["APIVersion", "v8"]),
        ("APIDomain=zohoapis.com", ["APIDomain", "base URL"]),
    ],
)
def test_bad_values_name_key_and_allowed(extra: str, needles: list[str]) -> None:
    text = BASE.replace("Region=EU;", "") + ("Region=EU;" if "Region=" not in extra else "") + extra
    with pytest.raises(ConfigError) as info:
        load(text)
    for needle in needles:
        assert needle in str(info.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("OAuthClientId=a;OAuthClientSecret=b;OAuthRefreshToken=c", "Region is required"),
        ("Region=US;OAuthClientId=a;OAuthRefreshToken=c", "OAuthClientSecret is required"),
        ("Region=US", "OAuthClientId, OAuthClientSecret, OAuthRefreshToken are required"),
        ("Region=US;InitiateOAuth=OFF", "OAuthAccessToken is required"),
        ("Region=US;InitiateOAuth=GETANDREFRESH;OAuthClientId=a", "OAuthClientSecret"),
    ],
)
def test_required_keys(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load(text)


def test_region_defaults_to_us_when_both_overrides_given() -> None:
    s = load(
        "OAuthClientId=a;OAuthClientSecret=bbbbbbbb;OAuthRefreshToken=cccccccc;"
        "AccountsServer=http://127.0.0.1:1;APIDomain=http://127.0.0.1:1"
    )
    assert s.region is Region.US
    s = load("Region=US;InitiateOAuth=OFF;OAuthAccessToken=1000.only.access")
    assert s.access_token is not None and s.refresh_token is None


def test_repr_and_str_never_show_secrets() -> None:
    text = BASE + "OAuthAccessToken=1000.access-token-value.xyz"
    s = load(text)
    for shown in (repr(s), str(s), repr(load_settings(text, environ={}))):
        assert SECRET not in shown
        assert REFRESH not in shown
        assert "1000.access-token-value.xyz" not in shown
    assert s.client_secret is not None and s.client_secret.get_secret_value() == SECRET
    # Registered as soon as parsed: logs mask them.
    assert SECRET not in redact(f"oops {SECRET}")


def test_bad_value_of_secret_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        load(BASE + "OAuthClientSecret=dup-secret-999999")
    assert "dup-secret-999999" not in str(info.value)


def test_settings_frozen() -> None:
    s = load(BASE)
    with pytest.raises(ValueError):
        s.region = Region.US


# -- precedence -----------------------------------------------------------------------------


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "zoho.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_precedence_connection_over_env_over_env_string_over_toml(tmp_path: Path) -> None:
    toml = write_toml(
        tmp_path,
        f"""
[connection]
Region = "JP"
instance_type = "Sandbox"
api_type = "REST"
use_coql = true
OAuthClientId = "1000.toml"
OAuthClientSecret = "{SECRET}"
oauth_refresh_token = "{REFRESH}"
scope = ["ZohoCRM.org.READ", "ZohoCRM.bulk.READ"]

[tuning]
max_attempts = 3
workers = 2
""",
    )
    environ = {
        "ZOHO_CRM_CONNECTION": "Region=IN;InstanceType=Development;APIVersion=v7",
        "zoho_crm_instancetype": "Production",
        "ZOHO_CRM_REGION": "CA",
        "ZOHO_CRM_TUNING_WORKERS": "8",
        "ZOHO_CRM_TUNING_RETRY_INITIAL_WAIT": "0.01",
        "UNRELATED": "x",
    }
    loaded = load_settings("Region=AU", toml, environ)
    s = loaded.settings
    assert s.region is Region.AU  # explicit string wins
    assert s.instance_type is InstanceType.PRODUCTION  # per-key env beats ZOHO_CRM_CONNECTION
    assert s.api_version == "v7"  # ZOHO_CRM_CONNECTION beats the file/default
    assert s.api_type is APIType.REST  # from the file
    assert s.use_coql is True
    assert s.client_id == "1000.toml"
    assert s.scopes == ("ZohoCRM.org.READ", "ZohoCRM.bulk.READ")
    assert s.tuning.max_attempts == 3  # file
    assert s.tuning.workers == 8  # env beats file
    assert s.tuning.retry_initial_wait == 0.01
    assert s.tuning.http_read_timeout == 120.0  # default
    assert loaded.warnings == []

    without_string = load_settings(None, toml, environ).settings
    assert without_string.region is Region.CA
    only_file = load_settings(None, toml, {}).settings
    assert only_file.region is Region.JP
    assert only_file.instance_type is InstanceType.SANDBOX


def test_an_empty_value_blanks_the_same_key_from_a_lower_source() -> None:
    creds = "OAuthClientId=a;OAuthClientSecret=bbbbbbbb;OAuthRefreshToken=cccccccc"
    with pytest.raises(ConfigError, match="Region is required"):
        load_settings(f"Region=;{creds}", None, {"ZOHO_CRM_REGION": "EU"})
    environ = {"ZOHO_CRM_CONNECTION": f"Region=JP;{creds}", "ZOHO_CRM_OAUTHCLIENTID": ""}
    with pytest.raises(ConfigError, match="OAuthClientId is required"):
        load_settings(None, None, environ)


def test_toml_connection_as_string_and_warnings(tmp_path: Path) -> None:
    toml = write_toml(
        tmp_path,
        f"""
connection = "{BASE}OAuthRefeshToken=x"
[tuning]
max_atempts = 2
[extra]
""",
    )
    loaded = load_settings(None, toml, {"ZOHO_CRM_REGON": "US", "ZOHO_CRM_OUTPUT": "x"})
    assert loaded.settings.region is Region.EU
    text = " | ".join(loaded.warnings)
    assert "did you mean OAuthRefreshToken?" in text
    assert "did you mean max_attempts?" in text
    assert "'extra'" in text
    assert "ZOHO_CRM_REGON" in text and "did you mean Region?" in text
    assert "ZOHO_CRM_OUTPUT" not in text


def test_env_per_key_only(tmp_path: Path) -> None:
    environ = {
        "ZOHO_CRM_REGION": "Europe",
        "ZOHO_CRM_OAUTHCLIENTID": "1000.env",
        "ZOHO_CRM_OAUTH_CLIENT_SECRET": SECRET,
        "Zoho_Crm_OAuthRefreshToken": REFRESH,
        "ZOHO_CRM_TOKEN_CACHE_DIR": str(tmp_path),
    }
    loaded = load_settings(environ=environ)
    assert loaded.settings.region is Region.EU
    assert loaded.settings.client_id == "1000.env"
    assert loaded.warnings == []


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[connection\n", "not valid TOML"),
        ("connection = 3\n", "must be a table or a string"),
        ("tuning = 3\n", "'tuning'"),
        ("[tuning]\nmax_attempts = 0\n", "max_attempts"),
        ("[tuning]\nhttp_read_timeout = 'soon'\n", "http_read_timeout"),
        ("[connection]\nRegion='US'\nregion='EU'\n", "given twice"),
    ],
)
def test_bad_toml(tmp_path: Path, content: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_settings(BASE, write_toml(tmp_path, content), {})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(BASE, tmp_path / "nope.toml", {})


def test_bad_tuning_env() -> None:
    with pytest.raises(ConfigError, match="workers"):
        load_settings(BASE, None, {"ZOHO_CRM_TUNING_WORKERS": "many"})


EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def test_example_config_loads_once_its_credentials_come_from_the_environment() -> None:
    # The example's own credentials are placeholders (refused below); the environment wins.
    environ = {
        "ZOHO_CRM_OAUTHCLIENTID": "1000.REALCLIENTID",
        "ZOHO_CRM_OAUTHCLIENTSECRET": "a-real-client-secret",
        "ZOHO_CRM_OAUTHREFRESHTOKEN": "1000.real.refresh-token",
    }
    loaded = load_settings(None, EXAMPLE, environ)
    assert loaded.warnings == []
    assert loaded.settings.region is Region.US
    assert loaded.settings.client_id == "1000.REALCLIENTID"
    assert loaded.settings.tuning == Tuning()


def test_the_example_config_as_it_is_is_refused_naming_the_keys_to_fill_in() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, EXAMPLE, {})
    message = str(caught.value)
    assert message.startswith(
        "OAuthClientId, OAuthClientSecret, OAuthRefreshToken still hold the example's "
        "placeholder values"
    ), message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("connection", "named"),
    [
        pytest.param(
            "Region=US; OAuthClientId=1000.abcdef; OAuthClientSecret=your-client-secret; "
            "OAuthRefreshToken=1000.r.tttttt",
            "OAuthClientSecret still holds",
            id="one-left",
        ),
        pytest.param(
            "Region=EU; OAuthClientId=1000.XXXX; OAuthClientSecret=xxxx; "
            "OAuthRefreshToken=1000.xxxx",
            "OAuthClientId, OAuthClientSecret, OAuthRefreshToken still hold",
            id="readme-placeholders",
        ),
        pytest.param(
            "Region=US; InitiateOAuth=OFF; OAuthAccessToken=1000.your-access-token",
            "OAuthAccessToken still holds",
            id="access-token",
        ),
    ],
)
def test_placeholder_credentials_are_refused_before_any_call(connection: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(connection, None, {})


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param({}, id="nothing"),
        pytest.param({"ZOHO_CRM_TUNING_WORKERS": "2"}, id="only-tuning"),
        pytest.param({"ZOHO_CRM_CONNECTION": "  "}, id="blank-connection"),
        pytest.param({"ZOHO_CRM_REGION": ""}, id="blank-key"),
    ],
)
def test_no_connection_at_all_says_where_settings_come_from(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, None, environ)
    assert str(caught.value) == "no connection: use --connection, ZOHO_CRM_CONNECTION or --config"


def test_an_incomplete_connection_still_names_the_missing_key() -> None:
    with pytest.raises(ConfigError, match="Region is required"):
        load_settings(None, None, {"ZOHO_CRM_OAUTHCLIENTID": "1000.abcdef"})


# -- property: any text -> Settings or ConfigError ------------------------------------------

_values = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["US", "eu", "Sandbox", "OFF", "REFRESH", "true", "REST", "v8", "http://h"]),
    st.text(max_size=8).map(lambda t: "'" + t + "'"),
)
_keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=10))
_pair = st.tuples(_keys, st.sampled_from(["=", " = ", "\n=", ""]), _values)
_semi_valid = st.lists(_pair, max_size=10).map(
    lambda pairs: ";\n".join(k + sep + v for k, sep, v in pairs)
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), _semi_valid))
def test_any_text_gives_settings_or_config_error(text: str) -> None:
    try:
        loaded = load_settings(text, environ={})
    except ConfigError as exc:
        assert str(exc)
    else:
        assert isinstance(loaded.settings, Settings)
