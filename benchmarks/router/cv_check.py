"""Re-run the shipped router's 5-fold CV (``router train --cv 5`` with build_default.py's
options) and compare with the ``cv_metrics`` recorded in the shipped manifest: the same
data, options, embedder and seed must give identical numbers. About 4 minutes on 2 cores.

    .venv/bin/python benchmarks/router/cv_check.py      # prints both, then IDENTICAL
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from build_default import train_shipped  # noqa: E402

from modelmix.routing.learned import load_embedder  # noqa: E402

MANIFEST = HERE.parents[1] / "src" / "modelmix" / "data" / "router" / "default" / "manifest.json"


def main() -> None:
    shipped = json.loads(MANIFEST.read_text())["cv_metrics"]["datasets"]
    router = train_shipped(None, load_embedder("default"))
    now = router.manifest["cv_metrics"]["datasets"]
    pairs = {name: {key: (shipped[name][key]["mean"], now[name][key]["mean"])
                    for key in ("apgr", "cpt50", "cpt80")} for name in shipped}
    print(json.dumps(pairs, indent=1))
    same = all(abs(a - b) < 1e-9 for d in pairs.values() for a, b in d.values())
    print("IDENTICAL" if same else "DIFFERENT")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
