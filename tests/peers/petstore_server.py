"""A real REST server for the Petstore API of ``examples/petstore.json`` (in memory).

Run it as ``python tests/peers/petstore_server.py --port N``; tests use
:func:`start_petstore`, which picks a free port, waits until it answers and stops it
afterwards. It implements enough of Swagger's Petstore 3 to be called through an
``openapi`` target: pets (add, update, get, find by status / tags, update with a
form, delete, upload an image), the store (inventory, orders) and users (create,
login, logout, get, update, delete), with the status codes the document declares
and JSON bodies.

Besides the API (under ``/api/v3``) it serves:

* ``GET /openapi.json``: the document itself, so a target can load it by URL
  (its ``servers`` entry ``/api/v3`` is relative, so the base URL comes from there);
* ``GET /_debug/requests``: the last requests as received (method, raw path, raw
  query string, headers, body), so tests can check the encoding on the wire;
* ``/slow/...``: anything under it waits 60 s before answering (timeout tests).

``GET /store/inventory`` requires the ``api_key`` header (the document's security
scheme), which the tests send through the target's ``headers`` config.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

HERE = Path(__file__).resolve()
SPEC = HERE.parents[2] / "examples" / "petstore.json"
API_KEY = "special-key"
STATUSES = ("available", "pending", "sold")

pets: dict[int, dict[str, Any]] = {}
orders: dict[int, dict[str, Any]] = {}
users: dict[str, dict[str, Any]] = {}
seen: deque[dict[str, Any]] = deque(maxlen=50)


def _seed() -> None:
    pets.clear()
    orders.clear()
    users.clear()
    for i, (name, status, tags) in enumerate(
        [
            ("Rex", "available", ["dog", "big"]),
            ("Tom", "pending", ["cat"]),
            ("Nemo", "sold", ["fish", "small"]),
            ("Lassie", "available", ["dog"]),
        ],
        start=1,
    ):
        pets[i] = {
            "id": i,
            "name": name,
            "category": {"id": 1, "name": "Pets"},
            "photoUrls": [],
            "tags": [{"id": n, "name": t} for n, t in enumerate(tags)],
            "status": status,
        }
    users["user1"] = {
        "id": 1,
        "username": "user1",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "email": "ada@example.com",
        "password": "secret",
        "phone": "",
        "userStatus": 1,
    }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": status, "message": message}, status_code=status)


def _int(raw: str) -> int | None:
    try:
        return int(raw)
    except ValueError:
        return None


async def _body(request: Request) -> dict[str, Any] | None:
    """A JSON or form body as a dict; None if it is neither."""
    raw = await request.body()
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/x-www-form-urlencoded"):
        return {k: v if len(v) > 1 else v[0] for k, v in parse_qs(raw.decode()).items()}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


# ------------------------------------------------------------------------------ pets


async def pet_collection(request: Request) -> Response:
    data = await _body(request)
    if data is None:
        return _error(400, "Invalid input")
    if not isinstance(data.get("name"), str) or "photoUrls" not in data:
        return _error(422, "Validation exception: 'name' and 'photoUrls' are required")
    given = data.get("id")
    if request.method == "PUT":
        if not isinstance(given, int):
            return _error(400, "Invalid ID supplied")
        if given not in pets:
            return _error(404, "Pet not found")
    pid = given if isinstance(given, int) else max(pets, default=0) + 1
    pet = {"id": pid, "photoUrls": [], "tags": [], "status": "available", **data}
    pets[pid] = pet
    return JSONResponse(pet)


async def find_by_status(request: Request) -> Response:
    wanted = request.query_params.getlist("status") or ["available"]
    if any(s not in STATUSES for s in wanted):
        return _error(400, "Invalid status value")
    return JSONResponse([p for p in pets.values() if p.get("status") in wanted])


async def find_by_tags(request: Request) -> Response:
    wanted = set(request.query_params.getlist("tags"))
    if not wanted:
        return _error(400, "Invalid tag value")
    return JSONResponse(
        [p for p in pets.values() if wanted & {t.get("name") for t in p.get("tags", [])}]
    )


async def pet_item(request: Request) -> Response:
    pid = _int(request.path_params["petId"])
    if pid is None:
        return _error(400, "Invalid ID supplied")
    if request.method == "DELETE":
        if pets.pop(pid, None) is None:
            return _error(400, "Invalid pet value")
        return JSONResponse({"code": 200, "type": "ok", "message": f"Pet {pid} deleted"})
    pet = pets.get(pid)
    if pet is None:
        return _error(404, "Pet not found")
    if request.method == "POST":  # updatePetWithForm: name and status in the query
        for key in ("name", "status"):
            if key in request.query_params:
                pet[key] = request.query_params[key]
    return JSONResponse(pet)


async def upload_image(request: Request) -> Response:
    pid = _int(request.path_params["petId"])
    if pid is None or pid not in pets:
        return _error(404, "Pet not found")
    data = await request.body()
    meta = request.query_params.get("additionalMetadata", "")
    pets[pid].setdefault("photoUrls", []).append(f"/images/{pid}/{len(data)}")
    return JSONResponse(
        {"code": 200, "type": "ok", "message": f"uploaded {len(data)} bytes; metadata={meta}"}
    )


# ----------------------------------------------------------------------------- store


async def inventory(request: Request) -> Response:
    if request.headers.get("api_key") != API_KEY:
        return _error(401, "api_key header missing or wrong")
    counts: dict[str, int] = {}
    for pet in pets.values():
        counts[pet.get("status", "unknown")] = counts.get(pet.get("status", "unknown"), 0) + 1
    return JSONResponse(counts)


async def place_order(request: Request) -> Response:
    data = await _body(request)
    if data is None:
        return _error(400, "Invalid input")
    if not isinstance(data.get("petId"), int) or data["petId"] not in pets:
        return _error(422, "Validation exception: unknown petId")
    given = data.get("id")
    oid = given if isinstance(given, int) else max(orders, default=0) + 1
    order = {"id": oid, "quantity": 1, "status": "placed", "complete": False, **data}
    orders[oid] = order
    return JSONResponse(order)


async def order_item(request: Request) -> Response:
    oid = _int(request.path_params["orderId"])
    if oid is None:
        return _error(400, "Invalid ID supplied")
    if oid not in orders:
        return _error(404, "Order not found")
    if request.method == "DELETE":
        del orders[oid]
        return Response(status_code=200)
    return JSONResponse(orders[oid])


# ----------------------------------------------------------------------------- users


async def create_user(request: Request) -> Response:
    data = await _body(request)
    if data is None or not isinstance(data.get("username"), str):
        return _error(400, "Invalid input")
    users[data["username"]] = data
    return JSONResponse(data)


async def create_users(request: Request) -> Response:
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return _error(400, "Invalid input")
    if not isinstance(data, list) or not all(isinstance(u, dict) for u in data):
        return _error(400, "Invalid input")
    for user in data:
        users[str(user.get("username"))] = user
    return JSONResponse(data[-1] if data else {})


async def login(request: Request) -> Response:
    name = request.query_params.get("username", "")
    user = users.get(name)
    if user is None or user.get("password") != request.query_params.get("password"):
        return _error(400, "Invalid username/password supplied")
    return JSONResponse(
        f"logged in user session: {name}",
        headers={"X-Rate-Limit": "5000", "X-Expires-After": "2030-01-01T00:00:00Z"},
    )


async def logout(request: Request) -> Response:
    return Response(status_code=200)


async def user_item(request: Request) -> Response:
    name = request.path_params["username"]
    if name not in users:
        return _error(404, "User not found")
    if request.method == "DELETE":
        del users[name]
        return Response(status_code=200)
    if request.method == "PUT":
        data = await _body(request)
        if data is None:
            return _error(400, "bad request")
        users.pop(name)
        users[str(data.get("username", name))] = data
        return Response(status_code=200)
    return JSONResponse(users[name])


# ----------------------------------------------------------------------------- extras


async def openapi_document(request: Request) -> Response:
    return Response(SPEC.read_bytes(), media_type="application/json")


async def debug_requests(request: Request) -> Response:
    return JSONResponse(list(seen))


async def slow(request: Request) -> Response:
    await asyncio.sleep(60)
    return JSONResponse({})


class Recorder:
    """ASGI middleware that records every API request as it arrived on the wire."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_debug"):
            await self.app(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        seen.append(
            {
                "method": scope["method"],
                "path": scope.get("raw_path", scope["path"].encode()).decode("latin-1"),
                "query": scope.get("query_string", b"").decode("latin-1"),
                "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
                "body": body.decode("utf-8", "replace"),
            }
        )
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def make_app() -> Any:
    _seed()
    api = "/api/v3"
    routes = [
        Route(f"{api}/pet", pet_collection, methods=["POST", "PUT"]),
        Route(f"{api}/pet/findByStatus", find_by_status, methods=["GET"]),
        Route(f"{api}/pet/findByTags", find_by_tags, methods=["GET"]),
        Route(f"{api}/pet/{{petId}}", pet_item, methods=["GET", "POST", "DELETE"]),
        Route(f"{api}/pet/{{petId}}/uploadImage", upload_image, methods=["POST"]),
        Route(f"{api}/store/inventory", inventory, methods=["GET"]),
        Route(f"{api}/store/order", place_order, methods=["POST"]),
        Route(f"{api}/store/order/{{orderId}}", order_item, methods=["GET", "DELETE"]),
        Route(f"{api}/user", create_user, methods=["POST"]),
        Route(f"{api}/user/createWithList", create_users, methods=["POST"]),
        Route(f"{api}/user/login", login, methods=["GET"]),
        Route(f"{api}/user/logout", logout, methods=["GET"]),
        Route(f"{api}/user/{{username}}", user_item, methods=["GET", "PUT", "DELETE"]),
        Route("/openapi.json", openapi_document, methods=["GET"]),
        Route("/_debug/requests", debug_requests, methods=["GET"]),
        Route("/slow/{rest:path}", slow, methods=["GET", "POST", "PUT", "DELETE"]),
    ]
    return Recorder(Starlette(routes=routes))


# ----------------------------------------------------------------------------- running


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PetstorePeer:
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/api/v3"

    def requests(self) -> list[dict[str, Any]]:
        """What the server received, oldest first."""
        result: list[dict[str, Any]] = httpx.get(f"{self.origin}/_debug/requests", timeout=5).json()
        return result

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def start_petstore(log_path: Path, timeout: float = 30) -> Iterator[PetstorePeer]:
    """Run the server as a subprocess on a free port until the block ends."""
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(HERE), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    peer = PetstorePeer(port, proc, log_path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"petstore server exited with {proc.returncode}:\n{peer.log()}")
            try:
                if httpx.get(f"{peer.origin}/_debug/requests", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"petstore server did not start:\n{peer.log()}")
            time.sleep(0.05)
        yield peer
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    # /slow requests never finish by themselves: do not wait for them on SIGTERM.
    uvicorn.run(
        make_app(), host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=1
    )


if __name__ == "__main__":
    main()
