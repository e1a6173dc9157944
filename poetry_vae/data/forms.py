"""Verse forms and their tags (the one meaning of "form" in the code; a poem's written layout is
:mod:`poetry_vae.layout`, its line sizes its shape): where a four-line block comes from, so a model can be
conditioned on it.

The list is fixed and its order is the id carried in every batch (`form`): never reorder, only append.
"""

from __future__ import annotations

from poetry_vae.errors import CorpusError

FORMS = ("jueju", "lushi_head", "lushi_tail", "gushi")
JUEJU = FORMS[0]
FORM_IDS = {form: index for index, form in enumerate(FORMS)}


def form_tag_id(form: str, where: str = "corpus row") -> int:
    try:
        return FORM_IDS[form]
    except KeyError:
        raise CorpusError(f"{where}: unknown form tag {form!r}: use one of {', '.join(FORMS)}") from None
