"""No module imports from a layer above it (docs/ARCHITECTURE.md, "Rooms"): checked on the
source, so a new upward import fails here with the module and the import named."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent / "owncastd"

# Lowest first; a module belongs to the first entry that prefixes its name. A module may import
# from its own layer and the layers below.
LAYERS = [
    ("ground", ["version", "datadir", "green", "markup", "media", "settings", "native", "random_ids",
                "passwords", "stream_keys", "roles", "netguard",
                "transcode.ladder", "ingest.rtmp", "chat.protocol", "llhls.bmff",
                "chat.render"]),
    ("infrastructure", ["store", "store_pg", "s3bucket", "bus", "config", "metrics", "logs", "heartbeat",
                        "emoji", "runtime", "stream_state", "log_collector"]),
    ("domain", ["stats", "chat", "status", "recordings"]),
    ("processes", ["api", "web", "ingest", "transcode", "services", "bridge", "llhls"]),
    ("top", ["supervisor", "cli"]),
]
# owncastctl talks to the server over HTTP only: of the daemon it may read the settings rules.
CTL_MAY_IMPORT = ("ctl", "settings", "transcode.ladder", "version")


def layer_of(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"owncastd.{module} has no layer: add it to LAYERS and the docs")


def imports(path: pathlib.Path, module: str) -> set[str]:
    # A relative import resolves against the full package name ("owncastd.api"), so that
    # "from ..x import y" comes out as "owncastd.x" like an absolute import.
    module = "owncastd." + module
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(p for p in base + [node.module or ""] if p)
            else:
                target = node.module or ""
            names = [target + "." + a.name for a in node.names]
            found.update(n if (ROOT.parent / (n.replace(".", "/") + ".py")).exists()
                         or (ROOT.parent / n.replace(".", "/")).is_dir() else target
                         for n in names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {f[len("owncastd."):] for f in found if f.startswith("owncastd.")}


def modules():
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if len(parts) > 1:
            yield path, ".".join(parts[1:])


def test_no_module_imports_from_a_layer_above_it():
    upward = []
    for path, module in modules():
        for dep in imports(path, module):
            if module.startswith("ctl"):
                if not dep.startswith(CTL_MAY_IMPORT):
                    upward.append(f"{module} -> {dep} (owncastctl is an HTTP client)")
            elif dep.startswith("ctl") or layer_of(dep) > layer_of(module):
                upward.append(f"{module} ({LAYERS[layer_of(module)][0]}) -> {dep}")
    assert upward == []
