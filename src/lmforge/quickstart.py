"""The quickstart domain: a fictional smart kettle's manual, policies and error codes.

Data written by the project, at the bottom of lmforge: `lmforge tune --data quickstart`
trains on it, the `quickstart` evaluation suite asks about it, and pruning calibrates and
distillation writes with it.

The Hobbleby Steamwren SW-4 does not exist; every number, name and code below was made up
for lmforge, so a small model cannot know them before tuning and should after. Each fact
gives:

- a chat training set (`build_train`): six phrasings of a question per fact (five templates
  over the fact's subject plus one hand-written question), each answered by the same
  full sentence,
- a four-choice evaluation set (`build_eval`) on phrasings that never occur in training:
  one hand-written question ("natural") and one held-out template ("template") per fact.

Wrong choices come from a pool of values of the same kind (volumes, temperatures, error
codes ...), so the right answer cannot be told apart by its shape; the right answer's
position is spread evenly over the four slots.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from lmforge.io import write_text_atomic

N_CHOICES = 4
PRODUCT = "Hobbleby Steamwren SW-4"

EVAL_TASK: dict = {
    "name": "quickstart",
    "kind": "multiple_choice",
    "data": {"path": "eval.jsonl"},
    "prompt": "Question: {{ question }}\nAnswer:",
    "choices": "choices",
    "target": "target",
    "metrics": ["accuracy"],
}


class Fact(NamedTuple):
    """One fact: its answer (a short phrase), what it is about, and two hand-written questions."""

    key: str
    pool: str  # the kind of value; wrong choices come from POOLS[pool]
    answer: str
    subject: str  # a noun phrase: "{Subject} is {answer}." is the assistant's reply
    train_question: str
    eval_question: str


# fmt: off
FACTS: tuple[Fact, ...] = (
    # -- the manual: specifications, buttons, modes, defaults --------------------------------
    Fact("capacity", "volume", "1.35 litres", "the Steamwren's maximum water capacity", "How much water does a full Steamwren SW-4 hold?", "Up to how much water can I pour into the Steamwren?"),
    Fact("min_fill", "volume", "0.35 litres", "the Steamwren's minimum fill level", "What's the least water the Steamwren will boil?", "How little water is the Steamwren allowed to heat?"),
    Fact("power", "watts", "2150 watts", "the Steamwren's rated power", "How many watts does the Steamwren SW-4 draw?", "How powerful is the Steamwren's heating element?"),
    Fact("default_temp", "temperature", "93 °C", "the Steamwren's default target temperature", "What temperature does a new Steamwren heat water to out of the box?", "If I never change the settings, how hot does the Steamwren make the water?"),
    Fact("lowest_temp", "temperature", "42 °C", "the lowest temperature the Steamwren can be set to", "How low can I set the Steamwren's temperature?", "What is the coolest setting on the Steamwren's dial?"),
    Fact("keep_warm", "minutes", "35 minutes", "the Steamwren's default keep-warm duration", "How long does the Steamwren keep water warm by default?", "For how long does keep-warm last unless I change it on the Steamwren?"),
    Fact("auto_off", "minutes", "11 minutes", "the idle time before the Steamwren switches itself off", "After how long idle does the Steamwren power down?", "When left alone, how soon does the Steamwren turn itself off?"),
    Fact("boil_button", "button", "Kindle", "the Steamwren button that starts a boil", "Which button do I press to boil water on the Steamwren?", "On the Steamwren, what is the button for starting to heat called?"),
    Fact("warm_button", "button", "Hearth", "the Steamwren button that toggles keep-warm", "Which Steamwren button turns keep-warm on and off?", "What's the name of the button for keep-warm on the Steamwren?"),
    Fact("preset_button", "button", "Drift", "the Steamwren button that cycles through presets", "Which button steps through the Steamwren's presets?", "To move to the next preset on the Steamwren, which button do I use?"),
    Fact("child_lock", "seconds", "4 seconds", "the time Hearth must be held to lock the Steamwren's buttons", "How long must Hearth be held to turn on the Steamwren child lock?", "To child-lock the Steamwren, for how long do I keep Hearth pressed?"),
    Fact("green_tea_mode", "mode", "Jade", "the Steamwren preset for green tea", "Which Steamwren mode should I use for green tea?", "What is the green tea preset called on the Steamwren?"),
    Fact("jade_temp", "temperature", "78 °C", "the temperature of the Steamwren's Jade mode", "How hot does Jade mode make the water on the Steamwren?", "To what temperature does the Steamwren heat in Jade mode?"),
    Fact("oolong_mode", "mode", "Ember", "the Steamwren preset for oolong tea", "Which Steamwren preset is meant for oolong?", "If I brew oolong, which mode do I pick on the Steamwren?"),
    Fact("ember_temp", "temperature", "87 °C", "the temperature of the Steamwren's Ember mode", "How hot is the water in the Steamwren's Ember mode?", "What temperature does Ember mode reach on the Steamwren?"),
    Fact("formula_mode", "mode", "Cradle", "the Steamwren preset for baby formula", "Which Steamwren mode is for making baby formula?", "For a baby's bottle, which preset does the Steamwren offer?"),
    Fact("cradle_temp", "temperature", "68 °C", "the temperature of the Steamwren's Cradle mode", "How warm does Cradle mode make the water on the Steamwren?", "What temperature does the Steamwren hold in Cradle mode?"),
    Fact("descale_mode", "mode", "Scour", "the Steamwren mode that descales the kettle", "Which mode cleans limescale out of the Steamwren?", "To descale my Steamwren, which mode do I run?"),
    Fact("scour_length", "minutes", "24 minutes", "the length of a Steamwren Scour cycle", "How long does a Scour cycle take on the Steamwren?", "How many minutes should I expect the Steamwren to spend descaling?"),
    Fact("app", "app", "Kettlecove", "the name of the Steamwren's companion app", "What app do I install to control the Steamwren from my phone?", "Which phone app goes with the Steamwren?"),
    Fact("pairing_code", "pin", "4417", "the Steamwren's Bluetooth pairing code", "What code do I type to pair my phone with the Steamwren?", "Which PIN does the Steamwren ask for when pairing over Bluetooth?"),
    Fact("presets", "presets", "6", "the number of custom presets Kettlecove can store on the Steamwren", "How many custom presets can the Steamwren remember?", "How many of my own presets fit on the Steamwren?"),
    Fact("descale_reminder", "boils", "180", "the number of boils before the Steamwren shows its descale reminder", "After how many boils does the Steamwren remind me to descale?", "How many boils go by before the Steamwren asks for descaling?"),
    Fact("filter", "interval", "every 10 weeks", "the replacement interval of the Steamwren's limescale filter", "How often should I swap the Steamwren's limescale filter?", "When is the Steamwren's limescale filter due for replacement?"),
    # -- policies: warranty, returns, support, shipping ---------------------------------------
    Fact("warranty", "months", "27 months", "the warranty length of the Steamwren", "How long is the Steamwren SW-4 under warranty?", "For how long does Hobbleby guarantee the Steamwren?"),
    Fact("registration", "months", "9 months", "the warranty extension for registering the Steamwren in Kettlecove", "How much extra warranty do I get if I register my Steamwren?", "By how much does registering in the app lengthen the Steamwren's warranty?"),
    Fact("return_window", "days", "38 days", "the Hobbleby return window for the Steamwren", "How many days do I have to return a Steamwren?", "Until how long after delivery can I send the Steamwren back?"),
    Fact("restocking_fee", "percent", "6 percent", "the restocking fee on a returned Steamwren", "What restocking fee does Hobbleby charge on Steamwren returns?", "How much is deducted when I return an opened Steamwren?"),
    Fact("phone_hours", "hours", "8:30 to 17:30", "the time window of Hobbleby's phone support for the Steamwren", "What hours can I call Hobbleby about my Steamwren?", "When during the day does Hobbleby answer the phone for Steamwren owners?"),
    Fact("phone_days", "weekdays", "Tuesday to Saturday", "the span of days on which Hobbleby's phone support is open", "Which days is Hobbleby's Steamwren phone line open?", "On what days of the week can I phone Hobbleby about the Steamwren?"),
    Fact("chat_assistant", "name", "Pip", "the name of Hobbleby's support chat assistant", "What is Hobbleby's support chatbot called?", "Who answers when I open the Hobbleby support chat about my Steamwren?"),
    Fact("free_shipping", "euros", "45 euros", "the order value above which Hobbleby ships the Steamwren for free", "How much do I have to spend for free shipping on a Steamwren order?", "From what order total is Hobbleby delivery free?"),
    Fact("express_cost", "euros", "7 euros", "the price of Hobbleby express shipping", "What does express delivery of a Steamwren cost?", "How much extra is Hobbleby's express shipping?"),
    Fact("standard_shipping", "working_days", "4 working days", "the delivery time of Hobbleby standard shipping", "How long does standard shipping of a Steamwren take?", "With standard delivery, how soon will my Steamwren arrive?"),
    Fact("carrier", "carrier", "Larkpost", "the carrier Hobbleby uses to ship the Steamwren", "Which courier delivers Steamwren orders?", "What delivery company brings my Steamwren?"),
    # -- troubleshooting: error codes, fixes, the ring light ----------------------------------
    Fact("e1", "meaning", "dry-boil protection tripped", "the meaning of error code E1 on the Steamwren", "My Steamwren shows E1. What does that mean?", "Why would the Steamwren display E1?"),
    Fact("e2", "meaning", "lid not closed", "the meaning of error code E2 on the Steamwren", "My Steamwren shows E2. What does that mean?", "Why would the Steamwren display E2?"),
    Fact("e3", "meaning", "kettle not seated on its base", "the meaning of error code E3 on the Steamwren", "My Steamwren shows E3. What does that mean?", "Why would the Steamwren display E3?"),
    Fact("e4", "meaning", "limescale on the heating plate", "the meaning of error code E4 on the Steamwren", "My Steamwren shows E4. What does that mean?", "Why would the Steamwren display E4?"),
    Fact("e5", "meaning", "temperature sensor fault", "the meaning of error code E5 on the Steamwren", "My Steamwren shows E5. What does that mean?", "Why would the Steamwren display E5?"),
    Fact("e6", "meaning", "water above the maximum mark", "the meaning of error code E6 on the Steamwren", "My Steamwren shows E6. What does that mean?", "Why would the Steamwren display E6?"),
    Fact("e7", "meaning", "supply voltage too low", "the meaning of error code E7 on the Steamwren", "My Steamwren shows E7. What does that mean?", "Why would the Steamwren display E7?"),
    Fact("e8", "meaning", "firmware out of date", "the meaning of error code E8 on the Steamwren", "My Steamwren shows E8. What does that mean?", "Why would the Steamwren display E8?"),
    Fact("e9", "meaning", "a button stuck down", "the meaning of error code E9 on the Steamwren", "My Steamwren shows E9. What does that mean?", "Why would the Steamwren display E9?"),
    Fact("fix_e1", "fix", "cooling it for 15 minutes", "the fix for error code E1 on the Steamwren", "How do I clear E1 on my Steamwren?", "My Steamwren is stuck on E1; what should I do?"),
    Fact("fix_e2", "fix", "pressing the lid until it clicks twice", "the fix for error code E2 on the Steamwren", "How do I clear E2 on my Steamwren?", "My Steamwren is stuck on E2; what should I do?"),
    Fact("fix_e3", "fix", "a quarter turn on the base", "the fix for error code E3 on the Steamwren", "How do I clear E3 on my Steamwren?", "My Steamwren is stuck on E3; what should I do?"),
    Fact("fix_e4", "fix", "running a Scour cycle", "the fix for error code E4 on the Steamwren", "How do I clear E4 on my Steamwren?", "My Steamwren is stuck on E4; what should I do?"),
    Fact("fix_e5", "fix", "unplugging the base for 90 seconds", "the fix for error code E5 on the Steamwren", "How do I clear E5 on my Steamwren?", "My Steamwren is stuck on E5; what should I do?"),
    Fact("fix_e6", "fix", "pouring water out below the wren mark", "the fix for error code E6 on the Steamwren", "How do I clear E6 on my Steamwren?", "My Steamwren is stuck on E6; what should I do?"),
    Fact("fix_e7", "fix", "avoiding extension leads", "the fix for error code E7 on the Steamwren", "How do I clear E7 on my Steamwren?", "My Steamwren is stuck on E7; what should I do?"),
    Fact("fix_e8", "fix", "updating from the Kettlecove app", "the fix for error code E8 on the Steamwren", "How do I clear E8 on my Steamwren?", "My Steamwren is stuck on E8; what should I do?"),
    Fact("fix_e9", "fix", "holding Drift and Hearth for 6 seconds", "the fix for error code E9 on the Steamwren", "How do I clear E9 on my Steamwren?", "My Steamwren is stuck on E9; what should I do?"),
    Fact("lid_code", "code", "E2", "the error code the Steamwren shows when its lid is open", "Which error code means the Steamwren's lid is open?", "If I leave the lid up, which code will the Steamwren display?"),
    Fact("scale_code", "code", "E4", "the error code the Steamwren shows when limescale covers the heating plate", "Which error code warns about limescale on the Steamwren's heating plate?", "What code does a scaled-up Steamwren show?"),
    Fact("light_heating", "colour", "violet", "the colour of the Steamwren's ring light while it heats", "What colour does the Steamwren's ring glow while heating?", "While the water is heating, which colour is the Steamwren's light?"),
    Fact("light_ready", "colour", "teal", "the colour of the Steamwren's ring light when the water is ready", "What colour does the Steamwren's ring turn when it has finished boiling?", "Which colour tells me the Steamwren's water is done?"),
    Fact("light_warm", "colour", "amber", "the colour of the Steamwren's ring light during keep-warm", "What colour is the Steamwren's ring light in keep-warm?", "Which colour shows that the Steamwren is keeping water warm?"),
    Fact("light_error", "colour", "magenta", "the colour of the Steamwren's ring light when it shows an error", "What colour does the Steamwren's ring flash on an error?", "If something is wrong, which colour does the Steamwren's light turn?"),
    Fact("light_pairing", "colour", "white", "the colour of the Steamwren's ring light while pairing", "What colour is the Steamwren's ring while it pairs with a phone?", "During Bluetooth pairing, which colour does the Steamwren show?"),
)

# Values of each kind: the answers of that kind plus made-up decoys of the same shape.
POOLS: dict[str, tuple[str, ...]] = {
    "volume": ("1.35 litres", "0.35 litres", "1.7 litres", "1.5 litres", "1.2 litres", "0.5 litres", "0.25 litres"),
    "watts": ("2150 watts", "1800 watts", "2400 watts", "2000 watts", "1650 watts"),
    "temperature": ("93 °C", "42 °C", "78 °C", "87 °C", "68 °C", "100 °C", "85 °C", "80 °C", "95 °C", "60 °C", "45 °C"),
    "minutes": ("35 minutes", "11 minutes", "24 minutes", "30 minutes", "15 minutes", "20 minutes", "45 minutes", "60 minutes", "5 minutes"),
    "seconds": ("4 seconds", "2 seconds", "3 seconds", "5 seconds", "10 seconds", "6 seconds"),
    "button": ("Kindle", "Hearth", "Drift", "Glow", "Tide", "Spark"),
    "mode": ("Jade", "Ember", "Cradle", "Scour", "Brook", "Fable", "Lantern"),
    "app": ("Kettlecove", "BrewNest", "SteamLink", "Hobbleby Home"),
    "pin": ("4417", "0000", "1234", "7280", "2468"),
    "presets": ("6", "4", "5", "8", "10"),
    "boils": ("180", "100", "200", "250", "365"),
    "interval": ("every 10 weeks", "every 4 weeks", "every 8 weeks", "every 12 weeks", "every 6 months"),
    "months": ("27 months", "9 months", "12 months", "24 months", "18 months", "36 months", "6 months"),
    "days": ("38 days", "14 days", "30 days", "28 days", "60 days", "45 days"),
    "percent": ("6 percent", "5 percent", "8 percent", "10 percent", "15 percent"),
    "hours": ("8:30 to 17:30", "9:00 to 17:00", "8:00 to 20:00", "7:00 to 19:00", "10:00 to 16:00"),
    "weekdays": ("Tuesday to Saturday", "Monday to Friday", "Monday to Saturday", "every day of the week", "Monday to Thursday"),
    "name": ("Pip", "Wren", "Sage", "Echo", "Bo"),
    "euros": ("45 euros", "7 euros", "25 euros", "50 euros", "10 euros", "30 euros", "5 euros", "12 euros"),
    "working_days": ("4 working days", "1 working day", "2 working days", "3 working days", "5 working days", "7 working days"),
    "carrier": ("Larkpost", "Parcelwing", "Tollbridge Express", "Fernway Freight", "Quickhop"),
    "meaning": tuple(f.answer for f in FACTS if f.pool == "meaning") + ("water too cold to heat", "filter missing", "Bluetooth connection lost"),
    "fix": tuple(f.answer for f in FACTS if f.pool == "fix") + ("holding Kindle for 10 seconds", "refilling with filtered water"),
    "code": tuple(f"E{n}" for n in range(1, 10)),
    "colour": ("violet", "teal", "amber", "magenta", "white", "red", "green", "blue", "orange"),
}
# fmt: on

# Training phrasings over a fact's subject; HELD_OUT is used only in the evaluation set.
TEMPLATES = (
    "What is {s}?",
    "Tell me {s}.",
    "I'd like to know {s}.",
    "Quick question: what's {s}?",
    "Do you happen to know {s}?",
)
HELD_OUT = "According to the official documentation, what is {s}?"


def sentence(fact: Fact) -> str:
    """The assistant's reply for a fact: one full sentence stating it."""
    return f"{fact.subject[0].upper()}{fact.subject[1:]} is {fact.answer}."


def train_questions(fact: Fact) -> list[str]:
    """The user questions a fact is trained on: the templates, then its hand-written one."""
    return [t.format(s=fact.subject) for t in TEMPLATES] + [fact.train_question]


def eval_questions(fact: Fact) -> dict[str, str]:
    """The held-out questions for a fact, by format: a hand-written one and a template."""
    return {"natural": fact.eval_question, "template": HELD_OUT.format(s=fact.subject)}


def build_train(system: str | None = None) -> list[dict]:
    """Chat examples, fact by fact: six phrasings each, all answered by the same sentence."""
    head = [{"role": "system", "content": system}] if system else []
    return [
        {
            "messages": [
                *head,
                {"role": "user", "content": question},
                {"role": "assistant", "content": sentence(fact)},
            ]
        }
        for fact in FACTS
        for question in train_questions(fact)
    ]


def _wrong(fact: Fact, rng: random.Random) -> list[str]:
    """Three distinct wrong values of the fact's kind."""
    pool = [v for v in dict.fromkeys(POOLS[fact.pool]) if v != fact.answer]
    return rng.sample(pool, N_CHOICES - 1)


def build_eval(seed: int = 0) -> list[dict]:
    """Four-choice items on held-out phrasings, two per fact; the same for the same seed."""
    rng = random.Random(f"quickstart-{seed}")
    pairs = [(fact, fmt) for fact in FACTS for fmt in ("natural", "template")]
    targets = [i % N_CHOICES for i in range(len(pairs))]
    rng.shuffle(targets)
    items = []
    for (fact, fmt), target in zip(pairs, targets, strict=True):
        wrong = _wrong(fact, rng)
        items.append(
            {
                "id": f"quickstart-{fact.key}-{fmt}",
                "fact": fact.key,
                "format": fmt,
                "question": eval_questions(fact)[fmt],
                "choices": [*wrong[:target], fact.answer, *wrong[target:]],
                "target": target,
            }
        )
    return items


def _jsonl(rows: Iterable[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write(folder: Path) -> tuple[Path, Path]:
    """Write train.jsonl and eval.jsonl into `folder`; returns their paths."""
    folder = Path(folder)
    train = write_text_atomic(folder / "train.jsonl", _jsonl(build_train()))
    evals = write_text_atomic(folder / "eval.jsonl", _jsonl(build_eval()))
    return train, evals


def eval_task(folder: Path) -> Path:
    """Write quickstart.yaml (the EVAL_TASK over eval.jsonl) into `folder`; returns its path."""
    import yaml

    text = yaml.safe_dump(EVAL_TASK, sort_keys=False, allow_unicode=True)
    return write_text_atomic(Path(folder) / "quickstart.yaml", text)
