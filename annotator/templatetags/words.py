"""Template side of ``annotator.vocabulary``: ``{{ r.state|word:"state" }}`` and the table for scripts."""
from __future__ import annotations

from django import template
from django.utils.html import json_script

from .. import vocabulary

register = template.Library()


@register.filter(name="word")
def word(value, kind: str) -> str:
    return vocabulary.word(kind=kind, value=value)


@register.simple_tag
def human_words_script():
    """The ``human-words`` JSON block that static/js/core/words.js reads."""
    return json_script(vocabulary.words(), "human-words")
