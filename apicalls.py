"""Call the API's four endpoints and save their combined answers.

Reads
    the running API (--url, default http://api_host:api_port of config.json), after checking
    with /health that it serves this production folder's live version (manifest.json).
Writes (output_model_path, atomically)
    apireturns.txt   one JSON document: {"prediction": ..., "scoring": ...,
                     "summarystats": ..., "diagnostics": ...}; --output picks another
                     name (apireturns2.txt, as the course asks after a redeploy)
Run
    make serve &                 # or: python app.py
    python apicalls.py
    python apicalls.py --output apireturns2.txt --url http://127.0.0.1:8000
Environment
    RISK_API_TOKEN    sent as "Authorization: Bearer <token>" when set
Exit status
    0 saved; 69 the API did not answer; 1 it answered with an error, or it serves another
    deployment than this production folder's (one line says which);
    78 bad config.json; 2 a usage error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from attrition.api.client import NAME, call_all, log
from attrition.core.config import load_config
from attrition.core.files import atomic_write_text
from attrition.core.logs import command_line, run_main, setup_logging
from attrition.core.names import APIRETURNS, TOKEN_ENV
from attrition.production import versions


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument("--url", help="the API's address (default: http://api_host:api_port of config.json)")
    parser.add_argument("--output", default=APIRETURNS, help="file name in output_model_path (%(default)s)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per call (%(default)s)")
    args = parser.parse_args(argv)
    if Path(args.output).name != args.output:
        parser.error(f"--output {args.output!r}: give a file name (it goes to output_model_path)")
    setup_logging(NAME)
    config = load_config()
    url = args.url or f"http://{config['api_host']}:{config['api_port']}"
    testdata = config.testdata_file
    try:
        data_file = str(testdata.relative_to(config.path.parent))
    except ValueError:
        data_file = str(testdata)
    manifest = versions.current_manifest(config.prod_folder)
    answers = call_all(url, data_file, os.environ.get(TOKEN_ENV), args.timeout, manifest)
    target = config.model_folder / args.output
    atomic_write_text(target, json.dumps(answers, indent=2) + "\n")
    log.info(
        "%d predictions, F1 %.4f from %s; wrote %s",
        len(answers["prediction"]["predictions"]),
        answers["scoring"]["f1"],
        url,
        target,
    )
    return 0


if __name__ == "__main__":
    run_main(main, NAME)
