"""Logins against a real hub process: a concurrent burst of wrong PINs cannot get past the
five-try lockout, and the flood leaves the clerks' work and the hub's reads untouched."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp

from qcall.store import LOGIN_MAX_FAILURES
from tests.functional.conftest import PIN, HubProcess

BURST = 200
WRONG = "80461357"


async def test_two_hundred_wrong_pins_at_once_get_five_guesses(hub: HubProcess) -> None:
    url = f"{hub.url}/api/v1/login"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def attempt(pin: str) -> tuple[int, str]:
            async with session.post(url, json={"staff": "c3", "pin": pin}) as response:
                body = await response.json()
                return response.status, body.get("error", {}).get("code", "ok")

        results = Counter(await asyncio.gather(*(attempt(WRONG) for _ in range(BURST))))
        assert results == {
            (401, "login_failed"): LOGIN_MAX_FAILURES,
            (429, "login_throttled"): BURST - LOGIN_MAX_FAILURES,
        }
        # The lock holds for the right PIN too; another clerk is not affected.
        assert await attempt(PIN) == (429, "login_throttled")
        async with session.post(url, json={"staff": "c4", "pin": PIN}) as response:
            assert response.status == 200


async def test_a_flood_of_unknown_ids_does_not_stop_a_clerk_or_a_screen(hub: HubProcess) -> None:
    url = f"{hub.url}/api/v1/login"
    display = {"Authorization": f"Bearer {hub.token('display')}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def stranger(n: int) -> int:
            async with session.post(url, json={"staff": f"x{n}", "pin": WRONG}) as response:
                return response.status

        flood = [asyncio.ensure_future(stranger(n)) for n in range(100)]
        await asyncio.sleep(0.05)  # the flood is under way
        async with session.get(f"{hub.url}/api/v1/state", headers=display) as response:
            assert response.status == 200
        # Answered while the flood is still being hashed: PIN checks do not queue reads.
        assert not all(f.done() for f in flood)
        statuses = Counter(await asyncio.gather(*flood))
        # Twenty failures from this address, then it waits; nothing else is evaluated.
        assert statuses[401] <= 20
        assert statuses[401] + statuses[429] == 100
        async with session.post(url, json={"staff": "c5", "pin": PIN}) as response:
            # This address is now rate-limited too; the keypads and other addresses are not.
            assert response.status == 429
            assert (await response.json())["error"]["code"] == "login_address_throttled"
