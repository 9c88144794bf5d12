"""The one-time OAuth grant: ``auth url`` and ``auth exchange``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from connector.cli.app import auth_app, command_epilog, run_command

ClientIdOpt = Annotated[
    str,
    typer.Option("--client-id", metavar="ID", help="OAuth client id from api-console.zoho.com."),
]
RedirectOpt = Annotated[
    str | None,
    typer.Option(
        "--redirect-uri",
        metavar="URL",
        help="The client's registered redirect URI, the same for url and exchange (default: "
        "https://localhost/callback).",
    ),
]
RegionOpt = Annotated[
    str,
    typer.Option(
        "--region", metavar="REGION", help="Data centre: US, EU, IN, AU, JP, CN, CA, SA, UK."
    ),
]


@auth_app.command(
    "url", epilog=command_epilog("zoho-crm auth url --client-id 1000.ABCD --region EU")
)
def auth_url(
    client_id: ClientIdOpt,
    region: RegionOpt = "US",
    redirect_uri: RedirectOpt = None,
    api_type: Annotated[
        str, typer.Option("--api-type", metavar="Bulk|REST", help="Decides the scopes asked.")
    ] = "Bulk",
    accounts_server: Annotated[
        str | None,
        typer.Option(
            "--accounts-server",
            metavar="URL",
            help="Override the accounts server URL (default: the region's).",
        ),
    ] = None,
) -> None:
    """Print the authorization URL to open in a browser, with the scopes the connector needs."""

    def action() -> None:
        from connector.zoho import oauth_setup

        kwargs: dict[str, Any] = {"accounts_server": accounts_server}
        if redirect_uri:
            kwargs["redirect_uri"] = redirect_uri
        url = oauth_setup.authorization_url(
            client_id, region, scopes=oauth_setup.scopes_for(api_type), **kwargs
        )
        typer.echo(url)

    run_command(action)


@auth_app.command(
    "exchange",
    epilog=command_epilog(
        "zoho-crm auth exchange --client-id 1000.ABCD --region EU --code 'https://localhost/"
        "callback?code=…' --write ~/.zoho-crm.conn"
    ),
)
def auth_exchange(
    code: Annotated[
        str,
        typer.Option(
            "--code",
            metavar="CODE_OR_URL",
            help="The grant code, or the whole address Zoho redirected to.",
        ),
    ],
    client_id: ClientIdOpt,
    client_secret: Annotated[
        str,
        typer.Option(
            "--client-secret",
            envvar="ZOHO_CRM_OAUTHCLIENTSECRET",
            metavar="SECRET",
            help="The client's secret; prefer the environment variable, which ps does not show.",
            show_default=False,
        ),
    ],
    region: RegionOpt = "US",
    redirect_uri: RedirectOpt = None,
    accounts_server: Annotated[
        str | None,
        typer.Option(
            "--accounts-server",
            metavar="URL",
            help="The accounts-server value given back with the code (default: the one in the "
            "redirect address, else the region's).",
        ),
    ] = None,
    show_secrets: Annotated[
        bool,
        typer.Option(
            "--show-secrets",
            help="Print the secret and tokens in the connection string (default: off).",
        ),
    ] = False,
    write: Annotated[
        Path | None,
        typer.Option(
            "--write",
            metavar="FILE",
            help="Also write the full connection string, secrets included, to this file (0600) "
            "(default: none).",
        ),
    ] = None,
) -> None:
    """Trade a grant code for tokens and print a ready connection string."""

    def action() -> None:
        from connector.redact import register_secret
        from connector.zoho import oauth_setup

        register_secret(client_secret)
        kwargs: dict[str, Any] = {"accounts_server": accounts_server}
        if redirect_uri:
            kwargs["redirect_uri"] = redirect_uri
        result = oauth_setup.exchange_code(code, client_id, client_secret, region, **kwargs)
        line = oauth_setup.connection_string_for(
            result,
            client_id=client_id,
            client_secret=client_secret,
            region=region,
            include_secrets=show_secrets,
        )
        if write is not None:
            # The grant code is spent now: keep the full string where only the owner can read it.
            full = oauth_setup.connection_string_for(
                result,
                client_id=client_id,
                client_secret=client_secret,
                region=region,
                include_secrets=True,
            )
            fd = os.open(write, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(full + "\n")
            os.chmod(write, 0o600)
            typer.echo(f"connection string with secrets written to {write} (mode 0600)", err=True)
        # With --show-secrets the user asked for them: printed verbatim, bypassing redaction.
        typer.echo(line)

    run_command(action)
