"""Every flow example in the docs (README.md, docs/flows.md: each ```yaml block with a
top-level `name:` and `steps:`) and a few shapes the validator takes must also pass the
shipped JSON Schema (docs/flow.schema.json), which editors use: the schema and the
validator agree. (That the validator takes them: zenith-flowspec's the_documented_examples_validate.)"""

import json
import re
import sys
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
schema = json.loads((ROOT / "docs" / "flow.schema.json").read_text())
validator = jsonschema.Draft202012Validator(schema)

examples = []
for doc in ["README.md", "docs/flows.md"]:
    text = (ROOT / doc).read_text()
    for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", text, re.S)):
        if re.search(r"^name:", block, re.M) and re.search(r"^steps:", block, re.M):
            examples.append((f"{doc} yaml block {i + 1}", block))
# Shapes the validator takes that a schema could get wrong.
examples.append(("numeric and boolean params", "name: p\nparams: {count: 4, on: true, who: x}\nsteps:\n  - {name: a, run: [echo, '{{ params.count }}']}\n"))
examples.append(("scalars where text is expected", "name: e\nsteps:\n  - {name: a, run: [sleep, 0], env: {DEBUG: true}}\n"))
examples.append(("step placement", "name: g\nsteps:\n  - {name: a, run: [true], constraints: [gpu=a100], prefer: [zone=b], queue: gpu, priority: 3}\n"))

bad = 0
for where, text in examples:
    errors = sorted(validator.iter_errors(yaml.safe_load(text)), key=lambda e: list(e.path))
    for e in errors:
        bad += 1
        path = "/".join(str(p) for p in e.path)
        print(f"{where}: {path}: {e.message}", file=sys.stderr)
print(f"flow examples against docs/flow.schema.json: {len(examples)} checked, {bad} errors")
sys.exit(1 if bad else 0)
