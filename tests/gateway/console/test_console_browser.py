"""The staff console in a real browser: Debian's Chromium, headless, driven by Playwright.

Playwright launches the system's ``chromium`` (``executable_path``; no browser is
downloaded). Each test ends with a screenshot of the page it ends on, saved in
its tmp dir or, when ``EHDS_ARTIFACTS_DIR`` is set (CI), in that folder. Without
Chromium or the playwright package the tests skip and say why; ``.ci/run``
installs Chromium, so they run in CI.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from permits.signing import cosign_permit
from tests.gateway.console.conftest import PASSWORD, Env

CHROMIUM = (
    os.environ.get("EHDS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
)

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium; CI installs it)"
    ),
    pytest.mark.timeout(180),
]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    playwright = pytest.importorskip(
        "playwright.async_api", reason="playwright not installed (dev extra)"
    )
    async with playwright.async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


async def new_page(browser: Any) -> Any:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    return await context.new_page()


async def shot(page: Any, tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("EHDS_ARTIFACTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"console-{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000
    return path


async def sign_in(page: Any, env: Env, staff_id: str, password: str = PASSWORD) -> None:
    await page.goto(env.base + "login")
    await page.fill("#f-staff_id", staff_id)
    await page.fill("#f-password", password)
    await page.click("button:has-text('Sign in')")


async def test_sign_in(env: Env, browser: Any, tmp_path: Path) -> None:
    page = await new_page(browser)
    await page.goto(env.base)  # not signed in: sent to the sign-in page
    assert page.url.endswith("/console/login")
    await sign_in(page, env, "rita", "not the password")
    assert "Sign-in failed" in await page.inner_text("main")
    await sign_in(page, env, "rita")
    assert await page.inner_text("h1") == "Dashboard"
    assert "rita · reviewer" in await page.inner_text("header")
    assert "Applications by state" in await page.inner_text("main")
    await shot(page, tmp_path, "dashboard")


async def test_reviewer_approves_and_a_second_person_signs(
    env: Env, browser: Any, tmp_path: Path
) -> None:
    app_id = await env.apply()
    ada = await new_page(browser)  # an admin may approve and sign, but not the same application
    await sign_in(ada, env, "ada")
    await ada.goto(env.base + f"applications/{app_id}")
    assert "Art. 53(1)(e)(ii)" in await ada.inner_text("main")  # the purpose in words
    await ada.click("button:has-text('Approve')")
    assert "Application approved." in await ada.inner_text("main")
    await ada.click("a:has-text('Issue and sign the permit')")
    await ada.click("button:has-text('Sign the permit')")
    assert "four-eyes" in await ada.inner_text("main")  # the approver is refused

    sam = await new_page(browser)
    await sign_in(sam, env, "sam")
    await sam.goto(env.base + f"applications/{app_id}/sign")
    assert "What will be signed" in await sam.inner_text("main")
    await sam.click("button:has-text('Sign the permit')")
    main = await sam.inner_text("main")
    assert "Permit signed and issued" in main and "valid" in main
    assert "valid from" in main and "Z" in main  # ISO 8601 dates, not epoch seconds
    (issued,) = await env.events("permit.issued")
    assert issued["subject"]["staff"] == "sam"
    await shot(sam, tmp_path, "permit-issued")


async def test_cross_border_permit_waits_for_the_cosigner(
    env: Env, browser: Any, tmp_path: Path
) -> None:
    app_id = await env.apply_cross_border()
    rita = await new_page(browser)
    await sign_in(rita, env, "rita")
    await rita.goto(env.base + f"applications/{app_id}")
    await rita.click("button:has-text('Approve')")

    sam = await new_page(browser)
    await sign_in(sam, env, "sam")
    await sam.goto(env.base + f"applications/{app_id}/sign")
    await sam.click("button:has-text('Sign the permit')")
    main = await sam.inner_text("main")
    assert "waits for the co-issuers" in main and "Waiting for: hdab-se" in main
    assert not await env.events("permit.issued")
    await shot(sam, tmp_path, "waiting-for-cosigner")

    # the co-issuer signs in its own system and sends the token back
    draft = await (await sam.request.get(env.base + f"applications/{app_id}/draft.jws")).text()
    await sam.fill("#f-token", cosign_permit(draft, env.peer))
    await sam.click("button:has-text('Add co-signature')")
    assert "Permit signed and issued" in await sam.inner_text("main")
    (issued,) = await env.events("permit.issued")
    assert issued["details"]["signatures"] == 2
    await shot(sam, tmp_path, "cross-border-issued")


async def test_revoke_and_the_register_shows_the_permit(
    env: Env, browser: Any, tmp_path: Path, staff_session: Any
) -> None:
    app_id = await env.apply()
    rita = await staff_session("rita")
    await rita.post(f"/console/applications/{app_id}/approve")
    sam = await new_page(browser)
    await sign_in(sam, env, "sam")
    await sam.goto(env.base + f"applications/{app_id}/sign")
    await sam.click("button:has-text('Sign the permit')")
    jti = sam.url.split("/permits/")[1].split("?")[0]

    public = await new_page(browser)  # no sign-in
    await public.goto(env.base + "register")
    text = await public.inner_text("main")
    assert jti in text and "Example Research Institute" in text and "valid" in text

    sam.on("dialog", lambda dialog: dialog.accept())  # the JS confirmation before revoking
    await sam.select_option("#f-reason", "breach_of_conditions")
    await sam.click("button:has-text('Revoke the permit')")
    main = await sam.inner_text("main")
    assert "Permit revoked" in main and "breach_of_conditions" in main

    await public.reload()
    row = await public.inner_text(f"tr:has-text('{jti}')")
    assert "revoked" in row and "breach_of_conditions" in row
    await shot(public, tmp_path, "register")


async def test_audit_explorer_verifies_the_log(env: Env, browser: Any, tmp_path: Path) -> None:
    app_id = await env.apply()
    page = await new_page(browser)
    await sign_in(page, env, "rita")
    await page.goto(env.base + f"applications/{app_id}")
    await page.click("button:has-text('Approve')")
    await page.click("header a:has-text('Audit log')")
    await page.select_option("#f-key", "staff")
    await page.fill("#f-value", "rita")
    await page.click("button:has-text('Filter')")
    assert "permit.approved" in await page.inner_text("tbody")
    await page.click("tbody a >> nth=0")
    assert "Inclusion proof verifies" in await page.inner_text("#proof-result")
    await page.click("a:has-text('Back to the log')")
    await page.click("#verify-log")
    assert await page.inner_text("#verify-result") == "OK"
    assert "The log verifies" in await page.inner_text("main")
    await shot(page, tmp_path, "audit-verified")
