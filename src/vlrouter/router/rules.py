"""The rule-based baseline policy ``complexity-rule`` (no features, no training):

cloud_benefit = clip(0.10 + 0.25*[has image] + 0.35*min(1, prompt_words/300)
                     + 0.30*[reasoning cue], 0, 1)

where a reasoning cue is a word such as "why", "explain", "prove", "calculate", "step by step",
"compare" or an arithmetic expression. With the default taus (fast 0.85, quality 0.45, energy 0.75)
a short text question stays on the edge in every scenario, and an image question that asks for
reasoning goes to the cloud in the quality scenario.
"""

from __future__ import annotations

import re

from vlrouter.router.base import Router, RoutingInput

_REASONING = re.compile(
    r"\b(why|explain|prove|derive|calculate|compute|solve|step[- ]by[- ]step|compare|analy[sz]e|"
    r"reason|estimate|how many|integral|equation)\b|\d\s*[-+*/^=]\s*\d",
    re.IGNORECASE,
)


class ComplexityRuleRouter(Router):
    name = "complexity-rule"

    def cloud_benefit(self, query: RoutingInput) -> tuple[float, dict[str, float]]:
        has_image = 1.0 if query.n_images else 0.0
        length = min(1.0, len(query.text.split()) / 300)
        reasoning = 1.0 if _REASONING.search(query.text) else 0.0
        benefit = min(1.0, max(0.0, 0.10 + 0.25 * has_image + 0.35 * length + 0.30 * reasoning))
        return benefit, {"image": has_image, "length": length, "reasoning": reasoning}
