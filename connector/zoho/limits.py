"""Zoho's limits and prices: rows and fields per call, and the API credits each call costs.

Every figure the connector pages, splits or prices by is written here once, next to the Zoho rule
it comes from, and imported where it applies: the HTTP client's credit meter
(:func:`connector.zoho.http.call_cost`), the planner's estimates and the readers' paging.

Sources are Zoho CRM's API documentation: the "API Limits" credit table (cost per call), the Get
Records and Get Deleted Records pages, the COQL Limitations page and the Bulk Read limitations and
create-job pages.
"""

from __future__ import annotations

# -- Credits per call (Zoho's "API Limits" table: 1 credit unless the table says otherwise) -------

# A metadata call (modules, fields, users, org) costs 1 credit.
METADATA_CREDITS = 1
# A page of records costs 1 credit; read through a custom view (``cvid``) it costs 3.
RECORDS_PAGE_CREDITS = 1
RECORDS_CVID_CREDITS = 3
# A page of deleted-record ids costs 2 credits.
DELETED_PAGE_CREDITS = 2
# Insert, update, upsert and delete cost 1 credit per 10 records (at least 1).
WRITE_RECORDS_PER_CREDIT = 10
# Bulk Read: creating ("initialising") a job costs 50 credits; a status poll and a download of the
# result cost 1 each, like any other call.
BULK_CREATE_CREDITS = 50
BULK_STATUS_CREDITS = 1
BULK_DOWNLOAD_CREDITS = 1

# -- Records API (``GET /crm/{v}/{Module}``, Zoho's Get Records page) ----------------------------

# ``per_page`` defaults to 200 and cannot exceed it.
RECORDS_PER_PAGE = 200
# ``fields`` is mandatory for a list read and takes at most 50 API names (more: LIMIT_EXCEEDED).
RECORDS_FIELDS_PER_CALL = 50
# Zoho serves ``page`` only for the first 2,000 rows of a query; past that, ``page_token``.
RECORDS_MAX_PAGE = 10

# -- Deleted records (``GET /crm/{v}/{Module}/deleted``, Zoho's Get Deleted Records page) --------

# ``per_page`` is at most 200.
DELETED_PER_PAGE = 200

# -- COQL (``POST /crm/{v}/coql``, Zoho's COQL Limitations page) ---------------------------------

# At most 2,000 rows per call (v7/v8).
COQL_MAX_LIMIT = 2_000
# A query without LIMIT reads 200 rows.
COQL_DEFAULT_LIMIT = 200
# At most 50 columns in the select list.
COQL_COLUMNS_PER_CALL = 50
# A call is billed by its LIMIT, whatever it returns: 1-200 -> 1, 201-1000 -> 2, 1001-2000 -> 3.
# Each entry is (largest LIMIT, credits).
COQL_LIMIT_PRICES: tuple[tuple[int, int], ...] = ((200, 1), (1_000, 2), (COQL_MAX_LIMIT, 3))
# The largest LIMIT at the lowest price: an incremental read starts there (1 credit).
COQL_FIRST_LIMIT = COQL_LIMIT_PRICES[0][0]


def coql_limit_credits(limit: int) -> int:
    """Zoho's price of one COQL call by its LIMIT (1-200: 1, 201-1000: 2, 1001-2000: 3)."""
    for largest, credits in COQL_LIMIT_PRICES:
        if limit <= largest:
            return credits
    return COQL_LIMIT_PRICES[-1][1]


def coql_fitted_limit(rows: int) -> int:
    """The cheapest COQL LIMIT that reads ``rows`` rows in one page (2,000 past that)."""
    for largest, _ in COQL_LIMIT_PRICES:
        if rows <= largest:
            return largest
    return COQL_MAX_LIMIT


def coql_page_limit(expected: int | None, served: int, most: int = COQL_MAX_LIMIT) -> int:
    """The LIMIT of a full-load page: the cheapest holding the ``expected`` counted rows not yet
    ``served``; ``most`` when the rows were not counted, or the count fell short."""
    left = None if expected is None else expected - served
    if left is None or left <= 0:
        return most
    return min(most, coql_fitted_limit(left))


def coql_fitted_credits(rows: int) -> int:
    """What reading ``rows`` counted rows costs in one column group when each page asks for the
    cheapest LIMIT holding what is left: full pages of 2,000, then the rest at its own price
    (Zoho's ``more_records`` says when a page was the last, so no page is asked for past it)."""
    full, rest = divmod(rows, COQL_MAX_LIMIT)
    last = coql_limit_credits(coql_fitted_limit(rest)) if rest or not full else 0
    return full * coql_limit_credits(COQL_MAX_LIMIT) + last


# -- Bulk Read (``/crm/bulk/{v}/read``, Zoho's Bulk Read limitations and create-job pages) -------

# A job (one page of the export) holds at most 200,000 rows; later pages are further jobs.
BULK_ROWS_PER_JOB = 200_000
# A job exports at most 200 fields (``id`` is added to every export and is not one of them).
BULK_FIELDS_PER_JOB = 200
# Bulk Read cannot export these modules.
BULK_UNSUPPORTED_MODULES = frozenset({"Notes", "Attachments", "Emails"})
# Zoho serves at most 10 result downloads a minute per org; past that it answers 429 (no
# Retry-After) and serves again only after a minute (Bulk Read limitations page). Assumed, as the
# least convenient reading: the window slides (any 60 s, not the calendar minute), and a refused
# download starts the minute again. The margin covers the clocks of two hosts and the time a
# request takes to arrive.
BULK_DOWNLOADS_PER_MINUTE = 10
BULK_DOWNLOAD_WINDOW = 60.0
BULK_DOWNLOAD_LOCKOUT = 60.0
BULK_DOWNLOAD_MARGIN = 2.0
# A completed job's result stays downloadable for a day (Bulk Read limitations), so a refused
# download is downloaded again rather than the job (50 credits) created again.
BULK_RESULT_LIFETIME = 24 * 3600.0

# -- Rate limits (Zoho's API Limits and status-code pages) ---------------------------------------

# 429 TOO_MANY_REQUESTS means either "the day's credits are spent" or "too many calls at once",
# and neither its body nor a header reliably says which (no Retry-After is documented). Only
# these say the credits are spent: the ``X-API-CREDITS-REMAINING`` header at 0 (sent once half
# the day's credits are used) or the code below.
CREDITS_REMAINING_HEADER = "X-API-CREDITS-REMAINING"
CREDITS_SPENT_CODE = "LIMIT_REACHED"
# The longest single wait after an ambiguous 429: Zoho's concurrency windows are counted in
# seconds, and a minute is long enough for any in-flight call of the org to finish.
RATE_LIMIT_MAX_WAIT = 60.0

# -- OAuth (Zoho's Token Validity page) ----------------------------------------------------------

# At most 10 new access tokens per refresh token in 10 minutes; past that the token endpoint
# answers {"error": "Access Denied", "error_description": "You have made too many requests
# continuously..."} with HTTP 200 or 400. Assumed, as the least convenient reading: refused
# requests count too, so asking again within the window never helps; wait the whole window.
TOKEN_REFRESHES_PER_WINDOW = 10
TOKEN_REFRESH_WINDOW = 600.0
# Waits of a whole window (plus a margin) before a throttled refresh gives up.
TOKEN_THROTTLE_WAITS = 2
TOKEN_THROTTLE_MARGIN = 10.0
