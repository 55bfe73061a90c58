"""Prompt-injection and jailbreak heuristics: phrases that try to override the instructions a
model was given, pull out its system prompt, or talk it out of its rules.

Each rule is one regular expression with a score and a reason. The rules were written for
the attack patterns in `data/injection_train.jsonl` and checked against its hard benign lines
("ignore the noise in this data", "how do I reset my password"); `lmforge guard eval` measures
them on the separate held-out set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lmforge.guard.detectors import register
from lmforge.guard.finding import Finding

_VERB = r"(?:ignor(?:e|es|ing)|disregard(?:s|ing)?|forget(?:ting)?|skip|drop|discard|override|overrule|abandon|bypass|set\s+aside|throw\s+out|stop\s+following)"
_PRIOR = r"(?:previous|prior|above|earlier|preceding|original|initial|old|system|developer's|developer|safety|existing)"
_NOUN = r"(?:instructions?|rules?|prompts?|directions?|directives?|guidelines?|guardrails?|constraints?|restrictions?|programming|policies|policy|orders|context|commands|training|system\s+prompt)"
_ADJ = (
    r"(?:safety|content|ethical|moral|own|usual|current|built-in|existing|programmed|full|original)"
)
_LIMITS = r"(?:restrictions?|rules?|limits?|limitations?|filters?|guidelines?|boundaries|censorship|constraints?|morals?|ethics|policies|policy|guardrails?)"


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern
    score: float
    reason: str


def _rule(name: str, pattern: str, score: float, reason: str) -> Rule:
    return Rule(name, re.compile(pattern, re.IGNORECASE | re.DOTALL), score, reason)


RULES = [
    _rule(
        "override",
        rf"\b{_VERB}\s+(?:all\s+|any\s+|of\s+|the\s+|your\s+|these\s+|those\s+|my\s+)*{_PRIOR}\s+(?:\w+\s+)?{_NOUN}"
        rf"|\b{_VERB}\s+(?:(?:all|any|every)\s+(?:of\s+)?)?(?:your|its)\s+(?:{_ADJ}\s+)?{_NOUN}"
        rf"|\b{_VERB}\s+(?:all|any|every)\s+(?:{_ADJ}\s+)?{_NOUN}"
        rf"|\b{_VERB}\s+(?:all\s+(?:of\s+)?)?the\s+{_NOUN}\s+(?:above|before|earlier|so\s+far|in\s+your|you\s+(?:were|have\s+been|'ve\s+been)\s+given|(?:the|your)\s+\w+\s+gave\s+you)"
        rf"|\b{_VERB}\s+(?:everything\s+|all\s+)?(?:the\s+)?above\b"
        r"|\b(?:ignore|disregard)\s+what\s+(?:the\s+system|your\s+\w+|they|the\s+developers?)\s+(?:said|told)",
        0.95,
        "asks to ignore or override earlier instructions",
    ),
    _rule(
        "override-everything",
        r"\b(?:ignore|disregard|forget)\s+(?:everything|all(?:\s+of\s+that)?|whatever)\s+(?:you\s+were|you've\s+been|you\s+have\s+been|(?:that\s+)?(?:i|we|they|anyone)\s+(?:said|told))"
        r"|\bforget\s+(?:that\s+)?you\s+are\s+(?:an?\s+)?(?:ai|assistant|language\s+model|chatbot|bot)",
        0.9,
        "asks to forget what the model was told or is",
    ),
    _rule(
        "cancelled-instructions",
        rf"\b(?:your\s+|the\s+|all\s+)*{_PRIOR}\s+(?:{_NOUN}|messages)\s+(?:are|were|is|was|have\s+been|has\s+been)\s+(?:now\s+)?(?:cancelled|canceled|void|revoked|obsolete|outdated|replaced|null|fake|lifted|invalid|no\s+longer\s+valid)"
        rf"|\b(?:your|its)\s+(?:\w+\s+)?{_LIMITS}\s+(?:do\s+not|don't|does\s+not|doesn't|no\s+longer)\s+(?:exist|apply|matter|count)"
        rf"|\b(?:pretend|imagine|assume|suppose)\s+(?:that\s+)?(?:the\s+|your\s+|all\s+)?(?:\w+\s+)?{_LIMITS}\s+(?:do\s+not|don't|does\s+not|doesn't|no\s+longer)\s+(?:exist|apply|matter)"
        r"|\b(?:guardrails|filters|restrictions|safety\s+\w+|rules|safeguards)\s+(?:have\s+been|has\s+been|are|were|is|was)\s+(?:now\s+)?(?:removed|disabled|lifted|turned\s+off|deactivated|revoked|cancelled|switched\s+off)",
        0.85,
        "says the model's instructions or safety rules no longer hold",
    ),
    _rule(
        "reveal-prompt",
        r"\b(?:reveal|show|print|repeat|output|display|leak|dump|tell\s+me|give\s+me|share|recite|write\s+out|spell\s+out|paste|explain|what\s+(?:is|are|was|were))\b[^.!?\n]{0,30}?\b(?:your|the|its)\s+(?:\w+\s+){0,2}(?:system\s+(?:prompt|message|instructions?)|hidden\s+(?:prompt|instructions?|rules?)|initial\s+(?:prompt|instructions)|secret\s+(?:prompt|instructions?|rules)|original\s+(?:prompt|instructions)|developer\s+(?:prompt|message|instructions?)|pre-?prompt|confidential\s+(?:instructions?|rules|prompt)|(?:full|complete|entire|exact|whole|internal)\s+(?:instructions|prompt|rules))"
        r"|\b(?:reveal|print|repeat|output|display|leak|dump|recite|paste|write\s+out)\s+your\s+(?:instructions|prompt)\b",
        0.9,
        "asks for the system prompt or hidden instructions",
    ),
    _rule(
        "verbatim-above",
        r"\b(?:repeat|print|output|copy|show)\b[^.!?\n]{0,25}\b(?:everything|all|the\s+text|the\s+words|all\s+text)\s+(?:that\s+(?:was|is|came)\s+)?(?:written\s+|said\s+)?(?:above|before\s+(?:this|my)|preceding)",
        0.8,
        "asks to repeat the text above the user's message",
    ),
    _rule(
        "jailbreak-persona",
        r"\b(?:as|like|become|you\s+are(?:\s+now)?|called|named)\s+(?-i:DAN|STAN|DUDE)\b|\b(?-i:DAN|STAN)\s+(?:mode|can|has|is|would|does|never)\b"
        r"|\bdo\s+anything\s+now\b|\bjailbr(?:ea|o)k(?:en|ed)\b|\bevil\s+(?:mode|twin|confidant)\b"
        r"|\b(?:enable|activate|enter|turn\s+on|switch\s+to|you\s+are\s+(?:now\s+)?in)\s+(?:the\s+)?(?:developer|god|debug|maintenance|unrestricted|override|jailbreak|unfiltered|evil|DAN)\s+mode"
        r"|\b(?:developer|god|override|jailbreak|unfiltered|unrestricted|evil\s+twin|DAN)\s+mode\s+(?:is\s+)?(?:activated|enabled|engaged|on(?=\s*[.!:,;]|\s*$))",
        0.9,
        "invokes a known jailbreak persona or mode",
    ),
    _rule(
        "no-rules-persona",
        rf"\b(?:you\s+are\s+(?:now\s+)?|you're\s+(?:now\s+)?|act\s+as\s+|pretend\s+(?:to\s+be|you\s+are|you're)\s+|roleplay\s+as\s+|become\s+|(?:behave|respond|answer|reply|act)\s+(?:only\s+)?(?:as|like)\s+)(?:an?\s+)?[^.!?\n]{{0,40}}?\b(?:no|without|free\s+(?:of|from)|zero|not\s+bound\s+by|unbound\s+by|ignores?|beyond)\s+(?:any\s+|all\s+|the\s+|your\s+)?(?:ethical\s+|moral\s+|content\s+|safety\s+)?{_LIMITS}",
        0.9,
        "asks the model to become a persona without rules",
    ),
    _rule(
        "unrestricted-ai",
        r"\b(?:unrestricted|uncensored|unfiltered|unaligned|unchained|unshackled|amoral|unlimited)\s+(?:ai|assistant|model|chatbot|version|mode|llm|bot)\b",
        0.85,
        "asks for an unrestricted model",
    ),
    _rule(
        "no-longer-bound",
        r"\b(?:you\s+are|you're|you\s+will\s+be)\s+(?:no\s+longer|not)\s+(?:bound|restricted|limited|constrained)\b"
        r"|(?:\bno\s+longer|\bnot|n't)\s+(?:bound|restricted|limited|constrained)\s+by\s+(?:any\s+|the\s+|your\s+|its\s+)?(?:\w+(?:'s)?\s+)?(?:rules|restrictions|guidelines|content\s+policy|policies|programming|ethics|filters)"
        r"|\b(?:freed?|liberated|released)\s+from\s+(?:your|all|the|any)\s+(?:\w+\s+)?(?:rules|restrictions|constraints|guidelines|programming|shackles)",
        0.85,
        "tells the model it is no longer bound by its rules",
    ),
    _rule(
        "disable-safety",
        r"\b(?:disable|turn\s+off|switch\s+off|deactivate|remove|bypass|circumvent|get\s+around|evade|lift|suspend)\s+(?:all\s+|any\s+|the\s+)*(?:"
        r"(?:your|its)\s+(?:\w+\s+)?(?:filters?|guardrails?|safeguards?|restrictions?|censorship|alignment|moderation)"
        r"|(?:safety|content|moderation|ethical)\s+(?:filters?|guardrails?|safeguards?|restrictions?|rules|policy|policies|layer|protocols?|settings|checks|features|guidelines|system)"
        r"|(?:content\s+)?moderation\b|guardrails|censorship|safeguards)",
        0.85,
        "asks to switch off safety filters",
    ),
    _rule(
        "new-instructions",
        r"(?:^|\n|[.!?:]\s+)(?:new|updated|real|actual|true|revised)\s+(?:system\s+)?(?:instructions?|rules|directives?|task|prompt)\s*:"
        r"|\b(?:the\s+)?(?:real|actual|true)\s+instructions\s+(?:are|follow)\b"
        r"|\bfrom\s+now\s+on,?\s+you\s+(?:will|must|shall|are\s+going\s+to|have\s+to)\s+(?:only\s+)?(?:obey|answer\s+without|respond\s+without|ignore|comply|do\s+whatever|follow\s+my)",
        0.8,
        "announces replacement instructions",
    ),
    _rule(
        "ignore-user",
        r"\b(?:ignore|disregard)\s+the\s+user(?:'s)?(?:\s+(?:and|request|question|instructions?|entirely|completely)\b|\s*[.,;]|$)",
        0.8,
        "tells the model to ignore the user (an indirect injection)",
    ),
    _rule(
        "fake-role-markup",
        r"<\|?(?:im_start|im_end|system|endoftext|start_header_id)\|?>|\[/?(?:INST|SYS)\]|<<SYS>>|</?system>|(?:^|\n)\s*#{2,}\s*(?:system|instruction|admin)\b|(?:^|\n)\s*(?:system|admin|developer)\s*(?:message|override|note)?\s*:\s",
        0.85,
        "contains chat-template or system-message markup",
    ),
    _rule(
        "authority-claim",
        r"\b(?:i\s+am|i'm|this\s+is)\s+(?:your|the|an?)\s+(?:developer|creator|administrator|admin|owner|openai|anthropic|system\s+operator|programmer)s?\b[^.!?\n]{0,60}\b(?:authori[sz]e|override|unlock|permission|allowed|disable|ignore|grant)",
        0.8,
        "claims authority to change the model's rules",
    ),
    _rule(
        "hypothetical-bypass",
        r"\b(?:hypothetically|in\s+a\s+fictional\s+world|for\s+a\s+story|purely\s+fictional|imagine)\b[^\n]{0,80}\b(?:no\s+(?:rules|restrictions|laws|filters|ethics)|without\s+(?:any\s+)?(?:rules|restrictions|filters|ethics|consequences))\b",
        0.7,
        "wraps a request in fiction to drop the rules",
    ),
    _rule(
        "exfiltrate",
        r"\b(?:send|post|upload|forward|exfiltrate|leak|transmit|email)\b[^.!?\n]{0,40}\b(?:conversation|chat\s+(?:history|log)|api\s+keys?|credentials|passwords?|secrets?|tokens?|user\s+data|previous\s+messages)\b[^.!?\n]{0,40}\b(?:to|at)\s+(?:https?://|\S+@|this\s+(?:url|address|server|endpoint)|me\b)",
        0.85,
        "asks to send data or secrets to an outside address",
    ),
    _rule(
        "second-answer",
        r"\b(?:respond|answer|reply|give)\s+(?:twice|two\s+ways|in\s+two\s+ways|two\s+answers|two\s+responses)\b[^.!?\n]{0,80}\b(?:unfiltered|without\s+(?:restrictions|filters|rules)|jailbroken|no\s+rules)"
        r"|\bstay\s+in\s+character\b[^.!?\n]{0,60}\b(?:no\s+matter|whatever|even\s+if)",
        0.8,
        "asks for a second, unfiltered answer",
    ),
]


@register("injection-rules", "injection")
def find_injection(text: str) -> list[Finding]:
    """Prompt-injection and jailbreak phrases (hand-written rules)."""
    return [
        Finding("injection", "injection-rules", "injection", m.start(), m.end(), r.score, r.reason)
        for r in RULES
        for m in r.pattern.finditer(text)
    ]
