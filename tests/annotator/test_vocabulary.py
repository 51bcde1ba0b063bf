"""The words the pages show for stored values (annotator/vocabulary.py)."""
from __future__ import annotations

import pytest

from annotator import vocabulary


@pytest.mark.parametrize("kind", sorted(vocabulary.CHOICES))
def test_every_stored_value_has_human_words(kind):
    for value, words in vocabulary.words()[kind].items():
        assert "_" not in words and words[:1].isupper(), (kind, value, words)
        assert vocabulary.word(kind=kind, value=value) == words


def test_words_people_see():
    assert vocabulary.word(kind="state", value="lungs_done") == "Waiting for review"
    assert vocabulary.word(kind="view", value="AP_SUPINE") == "AP supine"
    assert vocabulary.word(kind="source", value="imported") == "Imported with the dataset"
    assert vocabulary.word(kind="label_field", value="other_disease") == "Other disease"
    assert vocabulary.word(kind="action", value="region_added") == "added a region"


def test_values_no_vocabulary_knows_still_read_as_words():
    assert vocabulary.word(kind="state", value="some_new_state") == "Some new state"
    assert vocabulary.word(kind="action", value="model_rolled_back") == "Model rolled back"
    assert vocabulary.word(kind="view", value=None) == ""
