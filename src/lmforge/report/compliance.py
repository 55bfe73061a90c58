"""`lmforge compliance`: EU AI Act documentation filled from an artifact's recorded facts.

provider: the technical documentation of a general-purpose AI model (Article 53(1)(a),
Annex XI section 1), the information for downstream providers (Article 53(1)(b), Annex XII)
and the copyright and training-content items of Article 53(1)(c)-(d).
deployer: a risk-classification questionnaire (Article 5 screen, the Annex III high-risk
areas, Article 6, Article 50), with the use case matched by keywords as a *suggestion* a
person must confirm, and the Annex IV technical-documentation outline.

Each field is filled from facts (each with its source file and key) or listed as a gap: the
question a person must answer, in `<artifact>/answers.yaml` under the key shown. Nothing is
invented. This is a drafting aid, not legal advice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lmforge.errors import InvalidInputError
from lmforge.io import write_json_atomic, write_text_atomic
from lmforge.report.facts import Fact, Facts, gather, plain
from lmforge.report.render import render
from lmforge.store import Store

ROLES = ("provider", "deployer")


@dataclass(frozen=True)
class Field:
    """One item of a document: the facts that fill it, and what to ask when they are absent."""

    id: str
    title: str
    facts: tuple[str, ...]  # fact keys (facts.py) or answer keys (answers.yaml)
    optional: tuple[str, ...] = ()  # shown when recorded, never a gap


# Questions for facts that only a person can give (answers.yaml keys).
QUESTIONS = {
    "intended_use": "which tasks is the model meant for, and into which AI systems may it be integrated?",
    "acceptable_use_policy": "which acceptable use policy applies?",
    "release_date": "when is (or was) the model released?",
    "distribution": "how is it distributed (download, API, on-device ...)?",
    "interaction": "how does it interact with hardware or software that is not part of it?",
    "design_rationale": "why were these methods and settings chosen, and what does the model optimise for?",
    "data_curation": "how were the data obtained, selected, cleaned and checked for bias or unsuitable content?",
    "compute.hardware": "on which hardware was it trained (devices, count), and how many FLOPs did training take?",
    "copyright_policy": "what is the policy to comply with Union copyright law, incl. text-and-data-mining opt-outs (Art. 4(3) Directive 2019/790)?",
    "training_content_summary": "where is the public summary of the training content (AI Office template)?",
    "provider": "who is the provider (name, address)?",
    "hardware": "on which hardware is the system meant to run?",
    "user_interface": "what user interface does the deployer get?",
    "instructions_for_use": "where are the instructions for use?",
    "human_oversight": "which human-oversight measures apply (Art. 14), and how are outputs interpreted?",
    "predetermined_changes": "which changes to the system are planned in advance?",
    "test_reports": "where are the dated and signed test logs and reports?",
    "cybersecurity": "which cybersecurity measures protect the system (Art. 15)?",
    "foreseeable_risks": "which unintended outcomes and risks to health, safety and fundamental rights are foreseeable?",
    "metrics_rationale": "why are these performance metrics appropriate for this system?",
    "risk_management": "describe the risk-management system (Art. 9)",
    "changes": "which changes were made to the system over its lifecycle?",
    "standards": "which harmonised standards or common specifications were applied?",
    "declaration_of_conformity": "where is the EU declaration of conformity (Art. 47)?",
    "post_market_monitoring": "what is the post-market monitoring plan (Art. 72)?",
    "use_case": "what is the system's intended purpose? (pass --use-case)",
    "limitations": "which limitations have you seen in use?",
}

ARCHITECTURE = ("model.model_type", "model.parameters")
ARCH_EXTRA = ("model.layers", "adapter.trainable")
IO = ("io.modality", "model.context")

PROVIDER = [
    (
        "Annex XI §1 — General description of the general-purpose AI model (Art. 53(1)(a))",
        [
            Field("annex_xi.1.a", "Tasks the model is intended to perform; type and nature of AI systems it can be integrated into", ("intended_use",)),
            Field("annex_xi.1.b", "Acceptable use policies applicable", ("acceptable_use_policy",)),
            Field("annex_xi.1.c", "Date of release and methods of distribution", ("release_date", "distribution")),
            Field("annex_xi.1.d", "Architecture and number of parameters", ARCHITECTURE, ARCH_EXTRA),
            Field("annex_xi.1.e", "Modality and format of inputs and outputs", IO, ("io.chat_template",)),
            Field("annex_xi.1.f", "Licence", ("license", "data.license.*"), ("license.base",)),
        ],
    ),
    (
        "Annex XI §2 — Elements of the model and its development process",
        [
            Field("annex_xi.2.a", "Technical means (instructions of use, infrastructure, tools) required for integration", ("library", "versions"), ("files",)),
            Field("annex_xi.2.b", "Design specifications and training process: methodologies, techniques, key design choices and their rationale", ("lineage", "training", "design_rationale")),
            Field("annex_xi.2.c", "Data for training, testing and validation: type, provenance, curation, number of data points, scope", ("data", "evals", "data_curation")),
            Field("annex_xi.2.d", "Computational resources used to train (e.g. FLOPs), training time, other details", ("training.seconds", "compute.hardware"), ("training.tokens",)),
            Field("annex_xi.2.e", "Known or estimated energy consumption", ("energy.joules", "energy.method")),
        ],
    ),
    (
        "Article 53(1)(c)-(d) — Copyright policy and training-content summary",
        [
            Field("art53.1.c", "Policy to comply with Union copyright law", ("copyright_policy",)),
            Field("art53.1.d", "Publicly available summary of the content used for training", ("training_content_summary",), ("data",)),
        ],
    ),
    (
        "Annex XII — Information for downstream providers (Art. 53(1)(b))",
        [
            Field("annex_xii.1.a", "Tasks the model is intended to perform; type and nature of AI systems it can be integrated into", ("intended_use",)),
            Field("annex_xii.1.b", "Acceptable use policies applicable", ("acceptable_use_policy",)),
            Field("annex_xii.1.c", "Date of release and methods of distribution", ("release_date", "distribution")),
            Field("annex_xii.1.d", "How the model interacts with hardware or software that is not part of it", ("library", "interaction")),
            Field("annex_xii.1.e", "Versions of relevant software related to its use", ("versions",)),
            Field("annex_xii.1.f", "Architecture and number of parameters", ARCHITECTURE, ARCH_EXTRA),
            Field("annex_xii.1.g", "Modality and format of inputs and outputs", IO, ("io.chat_template",)),
            Field("annex_xii.1.h", "Licence", ("license", "data.license.*"), ("license.base",)),
            Field("annex_xii.2.a", "Technical means (instructions of use, infrastructure, tools) required for integration", ("library", "versions"), ("files",)),
            Field("annex_xii.2.b", "Modality, format and maximum size of inputs and outputs (e.g. context window)", IO),
            Field("annex_xii.2.c", "Data for training, testing and validation: type, provenance and curation", ("data", "evals", "data_curation")),
        ],
    ),
]  # fmt: skip

DEPLOYER = [
    (
        "Annex IV §1 — General description of the AI system",
        [
            Field("annex_iv.1.a", "Intended purpose, provider, and the version of the system", ("use_case", "provider", "name", "weights.sha256"), ("created",)),
            Field("annex_iv.1.b", "Interaction with hardware, software or other AI systems", ("library", "interaction")),
            Field("annex_iv.1.c", "Versions of relevant software or firmware", ("versions",)),
            Field("annex_iv.1.d", "Forms in which it is placed on the market or put into service", ("distribution",)),
            Field("annex_iv.1.e", "Hardware on which it is intended to run", ("hardware",)),
            Field("annex_iv.1.g", "User interface provided to the deployer", ("user_interface",)),
            Field("annex_iv.1.h", "Instructions for use for the deployer", ("instructions_for_use",)),
        ],
    ),
    (
        "Annex IV §2 — Elements of the system and its development process",
        [
            Field("annex_iv.2.a", "Methods and steps of development, incl. pre-trained systems and third-party tools used", ("lineage", "base", "training"), ("base.source",)),
            Field("annex_iv.2.b", "Design specifications: general logic, key design choices and rationale, what it optimises for", ("training", "design_rationale")),
            Field("annex_iv.2.c", "System architecture and computational resources used to develop, train, test and validate", ARCHITECTURE + ("training.seconds", "energy.joules"), ARCH_EXTRA + ("energy.method",)),
            Field("annex_iv.2.d", "Data requirements: datasheets, provenance, scope, selection, labelling and cleaning", ("data", "data_curation")),
            Field("annex_iv.2.e", "Human-oversight measures (Art. 14)", ("human_oversight",)),
            Field("annex_iv.2.f", "Predetermined changes to the system and its performance", ("predetermined_changes",)),
            Field("annex_iv.2.g", "Validation and testing: data, metrics (accuracy, robustness, discriminatory impact), test logs and reports", ("evals", "test_reports")),
            Field("annex_iv.2.h", "Cybersecurity measures", ("cybersecurity",)),
        ],
    ),
    (
        "Annex IV §3-9 — Monitoring, risk management, lifecycle and conformity",
        [
            Field("annex_iv.3", "Capabilities and limitations in performance (incl. for specific groups), foreseeable unintended outcomes, input specifications", ("evals", "limitations", "foreseeable_risks"), IO),
            Field("annex_iv.4", "Appropriateness of the performance metrics", ("metrics_rationale",), ("evals",)),
            Field("annex_iv.5", "Risk-management system (Art. 9)", ("risk_management",)),
            Field("annex_iv.6", "Changes made to the system through its lifecycle", ("lineage", "changes")),
            Field("annex_iv.7", "Harmonised standards or common specifications applied", ("standards",)),
            Field("annex_iv.8", "Copy of the EU declaration of conformity", ("declaration_of_conformity",)),
            Field("annex_iv.9", "Post-market monitoring plan (Art. 72)", ("post_market_monitoring",)),
        ],
    ),
]  # fmt: skip


@dataclass(frozen=True)
class Question:
    """A risk-classification question, with keywords that suggest a 'yes' for a use case."""

    id: str
    reference: str
    question: str
    keywords: tuple[str, ...]


# Annex III high-risk areas (Art. 6(2)), the Art. 5 screen, Art. 6(1) and Art. 50.
RISK_QUESTIONS = [
    Question("art5", "Article 5", "Is it a prohibited practice: manipulation or exploitation of vulnerabilities, social scoring, crime prediction from profiling alone, untargeted scraping of facial images, emotion recognition at work or school, biometric categorisation by sensitive traits, real-time remote biometric identification in public for law enforcement?",
             ("social scor", "subliminal", "manipulat", "exploit", "scrap", "predictive policing", "sensitive trait")),
    Question("annex_iii.1", "Annex III point 1 — Biometrics", "Is it used for remote biometric identification, biometric categorisation, or emotion recognition?",
             ("biometric", "face recognition", "facial", "fingerprint", "iris", "voiceprint", "emotion", "identify people", "identification of persons")),
    Question("annex_iii.2", "Annex III point 2 — Critical infrastructure", "Is it a safety component in managing or operating critical digital infrastructure, road traffic, or the supply of water, gas, heating or electricity?",
             ("critical infrastructure", "electricity", "power grid", "water supply", "gas supply", "heating", "road traffic", "traffic control", "energy supply", "digital infrastructure", "safety component")),
    Question("annex_iii.3", "Annex III point 3 — Education and vocational training", "Does it decide access or admission, evaluate learning outcomes, assess the level of education a person gets, or monitor students during tests?",
             ("school", "student", "pupil", "exam", "admission", "education", "grading", "grade ", "university", "vocational", "learning outcome", "proctor", "tutor")),
    Question("annex_iii.4", "Annex III point 4 — Employment, workers management, access to self-employment", "Is it used to recruit or select people (job ads, filtering applications, evaluating candidates), or to decide on promotion, termination, task allocation, or to monitor and evaluate workers?",
             ("recruit", "hiring", "hire", "job", "candidate", "applicant", "cv", "resume", "résumé", "employee", "worker", "promotion", "termination", "dismiss", "performance review", "workforce", "hr ")),
    Question("annex_iii.5", "Annex III point 5 — Essential private and public services and benefits", "Does it assess eligibility for public benefits or healthcare, creditworthiness or credit scores, risk and pricing of life or health insurance, or classify and dispatch emergency calls?",
             ("credit", "loan", "mortgage", "insurance", "benefit", "welfare", "social security", "eligib", "emergency", "dispatch", "triage")),
    Question("annex_iii.6", "Annex III point 6 — Law enforcement", "Is it used by or for law enforcement: victim risk, polygraphs, evaluating evidence, offending or re-offending risk, profiling in criminal investigations?",
             ("police", "law enforcement", "crime", "criminal", "suspect", "offender", "evidence", "polygraph", "profiling", "recidivism", "investigation")),
    Question("annex_iii.7", "Annex III point 7 — Migration, asylum and border control", "Is it used for migration, asylum, visa or border control: risk assessment, examining applications, detecting or identifying people?",
             ("migration", "migrant", "asylum", "visa", "border", "refugee", "residence permit", "immigration")),
    Question("annex_iii.8", "Annex III point 8 — Administration of justice and democratic processes", "Does it assist a judicial authority in researching and interpreting facts and law, or is it meant to influence the outcome of an election or referendum or voting behaviour?",
             ("court", "judge", "judicial", "legal dispute", "sentenc", "arbitration", "election", "voting", "voter", "referendum", "political campaign")),
    Question("art6.1", "Article 6(1) and Annex I", "Is it (or a safety component of) a product covered by the Union harmonisation legislation of Annex I (machinery, toys, medical devices, vehicles ...) that needs third-party conformity assessment?",
             ("medical device", "machinery", "toy", "vehicle", "aviation", "elevator", "lift", "safety component")),
    Question("art6.3", "Article 6(3)", "If an Annex III area applies: does the system only perform a narrow procedural task, improve the result of a completed human activity, detect patterns without replacing human assessment, or do a preparatory task — and does it never profile people? (Then it may not be high-risk; document why.)",
             ()),
    Question("art50.1", "Article 50(1)", "Does it interact directly with people? They must be told they are interacting with an AI system.",
             ("chat", "assistant", "customer", "conversation", "support", "helpdesk", "help desk", "agent", "user")),
    Question("art50.4", "Article 50(4)", "Does it publish generated text to inform the public on matters of public interest? It must be disclosed as AI-generated unless a person reviewed it and holds editorial responsibility.",
             ("news", "article", "publish", "public interest", "press", "journalis", "blog")),
]  # fmt: skip


def classify(use_case: str | None) -> list[dict[str, Any]]:
    """Each risk question with the keywords of `use_case` that match it: a suggestion only."""
    text = f" {(use_case or '').lower()} "
    out = []
    for q in RISK_QUESTIONS:
        matched = [k for k in q.keywords if re.search(r"(?<![a-z])" + re.escape(k), text)]
        if not use_case:
            suggestion = "no use case given: answer it yourself"
        elif not q.keywords:
            suggestion = "keywords cannot tell: answer it yourself"
        elif matched:
            suggestion = "possibly yes (keywords matched): a person must confirm"
        else:
            suggestion = "no keyword matched — this does not mean 'no': a person must confirm"
        out.append({"id": q.id, "reference": q.reference, "question": q.question,
                    "matched": matched, "suggestion": suggestion, "answer": None})  # fmt: skip
    return out


def fill(field: Field, facts: Facts) -> dict[str, Any]:
    """A field's value and sources from the facts, or its gaps; a person's answer to the
    field itself (answers.yaml key = the field id) fills it entirely."""
    answered = facts.answers.get(field.id)
    if answered is not None:
        return {"id": field.id, "title": field.title, "status": "filled",
                "value": {field.id: answered.value}, "sources": {field.id: answered.source},
                "missing": []}  # fmt: skip
    value, sources, missing = {}, {}, []
    required = _expand(field.facts, facts)
    for key in required + _expand(field.optional, facts):
        fact = facts.fact(key)
        if fact is not None:
            value[key] = plain(fact.value)
            sources[key] = fact.source
        elif key in required:
            question = facts.gaps.get(key) or QUESTIONS.get(key) or f"what is {key}?"
            missing.append({"key": key, "question": question})
    status = "filled" if not missing else "gap" if len(missing) == len(required) else "partial"
    return {"id": field.id, "title": field.title, "status": status, "value": value,
            "sources": sources, "missing": missing}  # fmt: skip


def _expand(keys: tuple[str, ...], facts: Facts) -> list[str]:
    """Keys with `prefix.*` replaced by every recorded, answered or missing key under it."""
    out = []
    for key in keys:
        if key.endswith(".*"):
            known = {*facts.facts, *facts.answers, *facts.gaps}
            out.extend(sorted(k for k in known if k.startswith(key[:-1])))
        else:
            out.append(key)
    return out


def build(
    name: str, role: str = "provider", use_case: str | None = None, store: Store | None = None
) -> dict[str, Any]:
    """The compliance document of artifact `name` for `role`, as a JSON-ready dict."""
    from lmforge import __version__

    if role not in ROLES:
        raise InvalidInputError(f"unknown role {role!r}", f"use one of: {', '.join(ROLES)}")
    facts = gather(name, store)
    if use_case:
        facts.facts["use_case"] = Fact(use_case, "command line (--use-case)")
    sections = []
    for title, fields in PROVIDER if role == "provider" else DEPLOYER:
        sections.append({"title": title, "fields": [fill(f, facts) for f in fields]})
    all_fields = [f for s in sections for f in s["fields"]]
    gaps = [
        {"field": f["id"], "key": m["key"], "question": m["question"]}
        for f in all_fields
        for m in f["missing"]
    ]
    doc = {
        "role": role,
        "model": name,
        "use_case": use_case,
        "generated_by": f"lmforge {__version__}",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "notice": (
            "Drafted from the artifact's recorded facts; every filled value names its source "
            "(file#key) and every gap is a question a person must answer, in "
            f"{name}/answers.yaml under the key shown. Not legal advice."
        ),
        "counts": {
            s: sum(f["status"] == s for f in all_fields) for s in ("filled", "partial", "gap")
        },
        "sections": sections,
        "gaps": gaps,
    }
    if role == "deployer":
        doc["questionnaire"] = classify(use_case)
    return doc


def write_compliance(
    name: str, role: str = "provider", use_case: str | None = None, store: Store | None = None
) -> dict[str, Path]:
    """Write `compliance/<role>.md` and `.json` into the artifact (atomically); return paths."""
    store = store or Store()
    doc = build(name, role, use_case, store)
    folder = store.get(name).path / "compliance"
    return {
        "markdown": write_text_atomic(folder / f"{role}.md", render_markdown(doc)),
        "json": write_json_atomic(folder / f"{role}.json", doc),
    }


def render_markdown(doc: dict[str, Any]) -> str:
    return render(f"compliance_{doc['role']}.md.j2", doc=doc)
