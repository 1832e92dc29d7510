"""The published contract, openapi.json: kept true by the routes themselves, and fuzzed.

The first tests compare the document with the application's own routes, so that a route or
method added without documentation (or documented and gone) fails here. The fuzz test runs
schemathesis against a real gunicorn: examples generated from the document, valid and
invalid, and every answer checked against it (no 5xx, documented status codes and content
types, answers that match their schemas, invalid input refused with a 4xx).
"""

import ast
import inspect
import json

import pytest
import schemathesis
from conftest import copy_template, timed
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from attrition.api.app import OPENAPI, create_app
from attrition.api.server import free_port, start_api_server, stop_process

DOCUMENT = json.loads(OPENAPI.read_text())
IGNORED_METHODS = {"HEAD", "OPTIONS"}  # answered by Flask for every route
EXAMPLES = 30  # per operation and mode: about a minute in all on 2 cores
TRUE = ("1", "true", "yes", "on")


def test_every_route_is_documented_and_every_documented_route_exists(deployed_workspace):
    app = create_app({"RISK_CONFIG": str(deployed_workspace.config_path)})
    routes = {
        rule.rule: sorted(rule.methods - IGNORED_METHODS)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        and not rule.endpoint.startswith(("dashboard.", "auth."))  # pages, not the API
    }
    documented = {path: sorted(method.upper() for method in item) for path, item in DOCUMENT["paths"].items()}
    assert routes == documented


def route_parameters() -> dict[tuple[str, str], set[str]]:
    """{(method, path): the query parameters its view reads}, from the views' own code: the names
    given to inputs.wants and inputs.whole_number, and FILE_KEYS where it reads a named file
    (inputs.requested_file, inputs.prediction_input)."""
    from attrition.api import inputs, routes

    found = {}
    tree = ast.parse(inspect.getsource(routes))
    views = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute):
                    verb, path = decorator.func.attr, decorator.args[0].value
                    if verb == "route":
                        methods = [method.value for method in decorator.keywords[0].value.elts]
                    else:
                        methods = [verb.upper()]
                    views[node.name] = (path, methods, node)
    for path, methods, node in views.values():
        names = set()
        for call in ast.walk(node):
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name):
                if call.func.id in ("wants", "whole_number"):
                    names.add(call.args[0].value)
                elif call.func.id in ("requested_file", "prediction_input"):
                    names.update(inputs.FILE_KEYS)
        for method in methods:
            found[(method, path)] = names
    return found


def test_every_parameter_a_route_reads_is_documented_and_every_documented_one_is_read():
    """Both ways: a query parameter added to a route without the document, or documented and
    no longer read, fails here (the document is a file: this test holds it to the code)."""
    documented = {
        (method.upper(), path): {parameter["name"] for parameter in operation.get("parameters", [])}
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
    }
    read = route_parameters()
    assert set(read) == set(documented)
    assert {key: sorted(names) for key, names in read.items()} == {
        key: sorted(names) for key, names in documented.items()
    }


def test_every_documented_status_is_one_the_server_can_answer():
    """The statuses the document names are the error classes' (errors.py), the refusals of the
    middleware and gunicorn (408, 413, 414, 431), the token's 401, Flask's 404/405/415 and 200;
    schemathesis (below) holds the other way: every status the running server sends is documented."""
    from attrition.core import errors

    def subclasses(cls):
        return {cls, *(each for sub in cls.__subclasses__() for each in subclasses(sub))}

    possible = {str(cls.http_status) for cls in subclasses(errors.PipelineError)}
    possible |= {"200", "401", "403", "404", "405", "408", "413", "414", "415", "429", "431"}
    named = {
        status for item in DOCUMENT["paths"].values() for op in item.values() for status in op["responses"]
    }
    assert named <= possible, sorted(named - possible)


def test_every_operation_documents_its_errors_in_the_error_shape():
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            assert {"200", "405", "500"} <= statuses, (method, path)
            if path not in ("/", "/health", "/openapi.json"):
                assert "401" in statuses, (method, path)  # the token rule
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    ref = response.get("$ref", "")
                    content = DOCUMENT["components"]["responses"][ref.rsplit("/", 1)[1]] if ref else response
                    schema = content["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)


def test_the_served_document_carries_this_servers_limits(deployed_workspace):
    deployed_workspace.set_config(api_max_rows=77)
    client = create_app({"RISK_CONFIG": str(deployed_workspace.config_path)}).test_client()
    served = client.get("/openapi.json").get_json()
    assert served["info"]["x-limits"]["api_max_rows"] == 77
    assert served["paths"] == DOCUMENT["paths"]


@pytest.fixture(scope="module")
def fuzzed_server(reported_template, tmp_path_factory):
    """gunicorn on the reported workspace (the call list /calllist serves), with a timing of its input
    files already measured, so that /diagnostics answers from it (the fuzz asks for no fresh timing:
    a real timing run takes seconds; tests/test_api.py and test_serving.py ask for one)."""
    workspace = copy_template(reported_template, tmp_path_factory.mktemp("fuzz") / "ws")
    root = workspace.root
    workspace.set_config(api_max_body_bytes=200_000, api_max_rows=2_000)
    timed(workspace)
    port = free_port()
    process = start_api_server("127.0.0.1", port, root / "gunicorn.log", workers=2, env=workspace.env)
    yield f"http://127.0.0.1:{port}"
    stop_process(process)
    log = (root / "gunicorn.log").read_text()
    assert "Traceback" not in log, log[-3000:]


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def operations():
    """(path, method, mode) of every operation; invalid examples only where there is input to get wrong."""
    return [
        (path, method.upper(), mode)
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if mode == GenerationMode.POSITIVE or operation.get("parameters") or operation.get("requestBody")
    ]


# what refusing an invalid request may look like here: 400, or 413/414/415 for its size or type
FUZZ_CONFIG = {
    "checks": {
        "negative_data_rejection": {"expected-statuses": ["400", "401", "404", "403", "413", "414", "415"]}
    }
}


@pytest.mark.slow
@pytest.mark.parametrize(("path", "method", "mode"), operations())
def test_the_running_api_keeps_its_contract(fuzzed_server, path, method, mode):
    """schemathesis' examples for one operation (a bounded number, the same each run)."""
    config = SchemathesisConfig.from_dict(FUZZ_CONFIG)
    api_schema = schemathesis.openapi.from_url(f"{fuzzed_server}/openapi.json", config=config)
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case):
        if path == "/diagnostics" and (case.query or {}).get("fresh") in TRUE:
            case.query["fresh"] = "0"  # the fixture's timing answers (see fuzzed_server)
        case.call_and_validate(checks=CHECKS, timeout=60)

    check()
