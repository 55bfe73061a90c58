"""The lineage graph of every artifact behind the report's models, as an SVG we write.

Columns are generations (the base models on the left), one box per artifact with the step
that made it, and an arrow from each parent to its child. No graphviz: the layout of a
lineage is a few chains that share their roots, which columns draw well enough.
"""

from __future__ import annotations

from html import escape
from typing import Any

from lmforge.report.facts import Facts

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 190, 46, 60, 18, 12


def graph(facts: dict[str, Facts]) -> dict[str, Any]:
    """Nodes (name, step, kind, created, source, depth, missing, reported) and edges
    (parent, child) of the union of the models' lineages."""
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[tuple[str, str]] = []
    for name, f in facts.items():
        chain = list(reversed(f.lineage))  # root first
        root_parent = chain[0].parent  # set when the root's parent is not in the store
        offset = 1 if root_parent else 0
        if root_parent and root_parent not in nodes:
            nodes[root_parent] = {"name": root_parent, "step": "?", "kind": "?", "created": None,
                                  "source": None, "depth": 0, "missing": True, "reported": False}  # fmt: skip
        for depth, a in enumerate(chain, start=offset):
            node = nodes.setdefault(
                a.name,
                {
                    "name": a.name,
                    "step": a.step or "?",
                    "kind": a.kind,
                    "created": a.meta.get("created"),
                    "source": f"{a.name}/artifact.json#parent",
                    "depth": depth,
                    "missing": False,
                    "reported": False,
                },
            )
            node["depth"] = max(node["depth"], depth)
            if a.parent and (a.parent, a.name) not in edges:
                edges.append((a.parent, a.name))
        nodes[name]["reported"] = True
    return {"nodes": list(nodes.values()), "edges": edges}


def svg(g: dict[str, Any]) -> str:
    """The graph as a standalone SVG document (no fonts or styles from outside)."""
    columns: dict[int, list[dict]] = {}
    for node in g["nodes"]:
        columns.setdefault(node["depth"], []).append(node)
    where = {}
    for depth, column in columns.items():
        for row, node in enumerate(column):
            where[node["name"]] = (PAD + depth * (BOX_W + GAP_X), PAD + row * (BOX_H + GAP_Y))
    width = PAD * 2 + (max(columns) + 1) * (BOX_W + GAP_X) - GAP_X
    height = PAD * 2 + max(len(c) for c in columns.values()) * (BOX_H + GAP_Y) - GAP_Y
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="lineage graph" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="sans-serif" font-size="12">',
        "<title>lineage of every artifact in this report</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#555"/></marker></defs>',
    ]
    for parent, child in g["edges"]:
        if parent not in where or child not in where:
            continue
        (x1, y1), (x2, y2) = where[parent], where[child]
        parts.append(
            f'<line class="edge" x1="{x1 + BOX_W}" y1="{y1 + BOX_H / 2}" x2="{x2}" '
            f'y2="{y2 + BOX_H / 2}" stroke="#555" stroke-width="1.5" marker-end="url(#arrow)">'
            f"<title>{escape(parent)} → {escape(child)}</title></line>"
        )
    for node in g["nodes"]:
        x, y = where[node["name"]]
        fill = "#fde2e2" if node["missing"] else "#dbeafe" if node["reported"] else "#f3f4f6"
        dash = ' stroke-dasharray="4 3"' if node["missing"] else ""
        sub = "not in the store" if node["missing"] else f"{node['step']} · {node['kind']}"
        tip = node["source"] or "named as a parent, but not in the store"
        parts.append(
            f'<g class="node" data-name="{escape(node["name"])}"><title>{escape(tip)}</title>'
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="{fill}" '
            f'stroke="#555"{dash}/>'
            f'<text x="{x + 8}" y="{y + 19}" font-weight="bold">{escape(node["name"][:26])}</text>'
            f'<text x="{x + 8}" y="{y + 36}" fill="#444">{escape(sub)}</text></g>'
        )
    parts.append("</svg>")
    return "\n".join(parts)
