"""How well, and how fast, ``search_tools`` finds the right tool in a large catalogue.

    .venv/bin/python bench/search_eval.py [--runs 20]

The catalogue is built the way the gateway builds it (``build_view``, prefix
``always``), from:

* real tools listed live over stdio: ``server-everything`` (npm), ``mcp-server-time``
  (PyPI), mcpmux's demo ``clock`` and ``notes``;
* OpenAPI documents converted by mcpmux's own converter: ``examples/petstore.json``
  and the Kubernetes REST API (``bench/openapi_convert.py``'s document from the
  schemas ``kubernetes-validate`` ships: 728 operations, full of near-duplicates
  across API versions);
* generated distractors: CRUD-style tools of fictional SaaS services that share the
  common words (create, list, message, user, file, time, report...).

Each query is written the way an agent asks, and names the one tool it should
find. Prints recall@1 and recall@5 over the queries, the misses, and the search
latency (p50, p95) at 2,000 tools, plus the time to build the index. Numbers are
for this machine; no test asserts on them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "bench")]

import anyio  # noqa: E402
import orjson  # noqa: E402

from mcpmux.multiplexer.catalog import TargetCatalog, build_view  # noqa: E402
from mcpmux.multiplexer.search import ToolIndex  # noqa: E402
from mcpmux.upstream.openapi.convert import convert  # noqa: E402

SERVICES = {
    "crm": ["contact", "lead", "deal", "company", "activity"],
    "billing": ["invoice", "payment", "subscription", "refund", "customer"],
    "calendar": ["event", "calendar", "attendee", "reminder", "room"],
    "helpdesk": ["ticket", "comment", "agent", "macro", "satisfaction survey"],
    "storage": ["bucket", "object", "folder", "share link", "quota"],
    "chat": ["channel", "message", "thread", "reaction", "member"],
    "analytics": ["report", "dashboard", "metric", "segment", "funnel"],
    "dns": ["zone", "record", "nameserver", "certificate", "redirect"],
    "ci": ["pipeline", "build", "artifact", "runner", "schedule"],
    "wiki": ["page", "space", "attachment", "template", "revision"],
    "hr": ["employee", "time off request", "payroll run", "position", "review"],
    "shipping": ["shipment", "label", "carrier", "package", "return"],
    "mailer": ["campaign", "mailing list", "subscriber", "email template", "bounce"],
    "monitor": ["alert", "incident", "check", "status page", "on-call schedule"],
    "forms": ["form", "response", "question", "webhook", "theme"],
    "photos": ["album", "photo", "tag", "face", "slideshow"],
    "notesapp": ["notebook", "sticky", "checklist", "label", "reminder note"],
    "weatherdesk": ["station", "sensor reading", "alert zone", "climate report", "radar frame"],
    "projects": ["project", "task", "milestone", "time entry", "board"],
    "vault": ["secret", "policy", "token", "lease", "audit log"],
}
VERBS = [
    ("list", "List {r}s in {s}, with filters and paging."),
    ("get", "Get one {r} of {s} by its id."),
    ("create", "Create a new {r} in {s}."),
    ("update", "Update fields of an existing {r} in {s}."),
    ("delete", "Delete a {r} from {s}."),
    ("search", "Search {r}s in {s} by text."),
    ("export", "Export {r}s of {s} as CSV."),
    ("archive", "Archive a {r} of {s} (it can be restored)."),
]

#: (query, the tool it should find)
QUERIES: list[tuple[str, str]] = [
    # Kubernetes (real, many near-duplicates)
    ("show me the pods running in the staging namespace", "k8s_listV1NamespacedPod"),
    ("delete the pod named web-123 in namespace prod", "k8s_deleteV1NamespacedPod"),
    ("get the details of deployment api in namespace default", "k8s_readAppsV1NamespacedDeployment"),
    ("scale up the checkout deployment by patching it", "k8s_patchAppsV1NamespacedDeployment"),
    ("create a new deployment from this manifest", "k8s_createAppsV1NamespacedDeployment"),
    ("list config maps in kube-system", "k8s_listV1NamespacedConfigMap"),
    ("read the database secret in namespace payments", "k8s_readV1NamespacedSecret"),
    ("create a kubernetes secret holding the api key", "k8s_createV1NamespacedSecret"),
    ("which cron jobs exist in the batch namespace", "k8s_listBatchV1NamespacedCronJob"),
    ("start a one-off job in the cluster", "k8s_createBatchV1NamespacedJob"),
    ("list the services exposed in namespace web", "k8s_listV1NamespacedService"),
    ("show the ingress rules of namespace shop", "k8s_listNetworkingV1NamespacedIngress"),
    ("list persistent volume claims in namespace data", "k8s_listV1NamespacedPersistentVolumeClaim"),
    ("what events happened recently in namespace prod", "k8s_listV1NamespacedEvent"),
    ("create a service account for the ci bot", "k8s_createV1NamespacedServiceAccount"),
    ("delete every pod in namespace test at once", "k8s_deletecollectionV1NamespacedPod"),
    ("replace the configmap app-config with a new version", "k8s_replaceV1NamespacedConfigMap"),
    ("list rbac roles in namespace team-a", "k8s_listRbacV1NamespacedRole"),
    # Petstore (OpenAPI)
    ("add a new pet to the store", "petstore_addPet"),
    ("find pets that are available for sale", "petstore_findPetsByStatus"),
    ("look up the pet with id 42", "petstore_getPetById"),
    ("upload a picture of my pet", "petstore_uploadFile"),
    ("how many pets are in stock by status", "petstore_getInventory"),
    ("place an order to buy a pet", "petstore_placeOrder"),
    ("log the user into the pet store", "petstore_loginUser"),
    ("find pets by tags", "petstore_findPetsByTags"),
    ("cancel my pet order 7", "petstore_deleteOrder"),
    # server-everything, mcp-server-time, demo servers (real, live)
    ("echo back this message", "everything_echo"),
    ("add 2 and 40 and tell me the sum", "everything_get-sum"),
    ("return a small test image", "everything_get-tiny-image"),
    ("compress this file with gzip", "everything_gzip-file-as-resource"),
    ("print the environment variables of the server", "everything_get-env"),
    ("run a long operation that reports progress", "everything_trigger-long-running-operation"),
    ("give me links to a few resources", "everything_get-resource-links"),
    ("research a topic in depth", "everything_simulate-research-query"),
    ("turn simulated logging on", "everything_toggle-simulated-logging"),
    ("what time is it in Tokyo right now", "time_get_current_time"),
    ("convert 9am New York time to Berlin time", "time_convert_time"),
    ("save a note titled groceries", "notes_add_note"),
    ("what notes do I have", "notes_list_notes"),
    ("read my note called ideas", "notes_get_note"),
    ("wait for ten seconds", "clock_sleep"),
    # generated services (lexical distractors of each other)
    ("open a support ticket for this customer", "helpdesk_create_ticket"),
    ("post a message in the engineering channel", "chat_create_message"),
    ("issue a refund for the last payment", "billing_create_refund"),
    ("book a meeting room for tomorrow", "calendar_create_room"),
    ("find the invoice sent to acme", "billing_search_invoice"),
    ("who is on call this week", "monitor_get_on-call_schedule"),
    ("export the sales funnel numbers", "analytics_export_funnel"),
    ("add a dns record for the new host", "dns_create_record"),
    ("show the latest builds of the pipeline", "ci_list_build"),
    ("request vacation days", "hr_create_time_off_request"),
    ("print a shipping label for the parcel", "shipping_create_label"),
    ("what does the rain sensor at the airport station read", "weatherdesk_get_sensor_reading"),
    ("unsubscribe this address from the mailing list", "mailer_delete_subscriber"),
    ("make a photo album of the trip", "photos_create_album"),
]


async def _live(argv: list[str]) -> list[dict[str, Any]]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=argv[0], args=argv[1:])
    async with stdio_client(params) as (read, write), ClientSession(read, write) as s:
        await s.initialize()
        return [t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in (await s.list_tools()).tools]


def _generated() -> list[dict[str, Any]]:
    tools = []
    for service, resources in SERVICES.items():
        for resource in resources:
            for verb, text in VERBS:
                name = f"{verb}_{resource.replace(' ', '_')}"
                props: dict[str, Any] = {"id": {"type": "string"}} if verb in ("get", "update", "delete") else {}
                if verb in ("list", "search", "export"):
                    props |= {"query": {"type": "string"}, "limit": {"type": "integer"}}
                if verb in ("create", "update"):
                    props |= {"name": {"type": "string"}, "fields": {"type": "object"}}
                tools.append({"name": name, "description": text.format(r=resource, s=service),
                              "inputSchema": {"type": "object", "properties": props}, "_service": service})
    return tools


def catalogue() -> list[dict[str, Any]]:
    import openapi_convert
    from tests.support.conformance import server_everything_cmd

    sources: dict[str, list[dict[str, Any]]] = {}
    py = sys.executable
    live = {
        "everything": server_everything_cmd("stdio"),
        "time": [str(Path(py).with_name("mcp-server-time"))],
        "clock": [py, "-m", "mcpmux.demo.clock"],
        "notes": [py, "-m", "mcpmux.demo.notes"],
    }
    for name, argv in live.items():
        sources[name] = anyio.run(_live, argv)
    sources["petstore"] = convert(orjson.loads((ROOT / "examples/petstore.json").read_bytes())).tools
    kube = openapi_convert.kubernetes()
    if kube is not None:
        sources["k8s"] = convert(kube).tools
    for tool in _generated():
        sources.setdefault(tool.pop("_service"), []).append(tool)
    catalogs = []
    for name, tools in sources.items():
        cat = TargetCatalog()
        cat.items["tools"] = tools
        catalogs.append((name, cat))
    view = build_view(catalogs, "always", len(catalogs))
    return [t for _, items in view.lists["tools"] for t in items]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20, help="searches of each query timed")
    args = parser.parse_args()
    tools = catalogue()
    names = {t["name"] for t in tools}
    missing = [want for _, want in QUERIES if want not in names]
    assert not missing, f"expected tools not in the catalogue: {missing}"
    start = time.perf_counter()
    index = ToolIndex(tools)
    build_ms = (time.perf_counter() - start) * 1000
    hits1 = hits5 = 0
    misses = []
    for query, want in QUERIES:
        found = [t["name"] for t in index.search(query, 5)]
        hits1 += bool(found) and found[0] == want
        hits5 += want in found
        if want not in found:
            misses.append((query, want, found[:3]))
    n = len(QUERIES)
    print(f"catalogue: {len(tools)} tools; queries: {n}; index build: {build_ms:.0f} ms")
    print(f"recall@1: {hits1 / n:.3f}  recall@5: {hits5 / n:.3f}")
    for query, want, found in misses:
        print(f"  miss: {query!r}: want {want}, got {found}")
    # Latency at exactly 2,000 tools: the catalogue cut, or padded with more distractors.
    sized = tools[:2000]
    pad = 0
    while len(sized) < 2000:
        sized.append({**tools[pad % len(tools)], "name": f"pad{pad}_{tools[pad % len(tools)]['name']}"[:64]})
        pad += 1
    big = ToolIndex(sized)
    times = []
    for _ in range(args.runs):
        for query, _want in QUERIES:
            t0 = time.perf_counter()
            big.search(query, 5)
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    p95 = times[int(len(times) * 0.95)]
    print(f"search at {len(sized)} tools: p50 {statistics.median(times):.2f} ms, p95 {p95:.2f} ms "
          f"({len(times)} searches)")


if __name__ == "__main__":
    main()
