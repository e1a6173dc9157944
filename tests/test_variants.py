"""Variant characters that t2s leaves (隠, 疎, 簷): the mapping from OpenCC's tables, the corpus build's option, and
prompts typed with either spelling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from poetry_vae.cli import CONFIG_DIR, quote_unicode_values
from poetry_vae.data.build_blocks import extract_blocks
from poetry_vae.data.build_corpus import extract, main
from poetry_vae.data.variants import known_spellings, simplifier, standardise, variant_map
from poetry_vae.sample import write_poems


def test_variants_left_by_t2s_map_to_the_standard_form() -> None:
    assert standardise("隠者疎簷下") == "隐者疏檐下"
    assert standardise("黒髪浄粧") == "黑发净妆"
    # characters standard in Chinese stay, whatever the Japanese or Taiwanese tables say of them
    assert standardise("翻郎著芸沪乾予") == "翻郎著芸沪乾予"
    assert all(len(standard) == 1 and standard != variant for variant, standard in variant_map().items())


def test_the_build_option_applies_the_mapping_after_t2s() -> None:
    text = "隱者歸來隠疎簷"
    assert simplifier()(text) == "隐者归来隠疎簷"  # t2s alone: the corpora shipped before the mapping
    assert simplifier(standard_variants=True)(text) == "隐者归来隐疏檐"


def write_source(root: Path, poems: list[dict]) -> Path:
    """A chinese-poetry package with ``poems`` as its Tang file (no Song poems, no tone patterns)."""
    for folder in ("quantangshi", "strains/json"):
        (root / "dist" / folder).mkdir(parents=True)
    (root / "dist" / "quantangshi" / "poet.tang.0.json").write_text(json.dumps(poems, ensure_ascii=False))
    (root / "dist" / "quantangshi" / "poet.song.0.json").write_text("[]")
    return root / "dist"


def test_build_maps_variants_unless_told_to_keep_them(tmp_path: Path) -> None:
    rest = "黃河入海流。欲窮千里目，更上一層樓。"
    quatrain = {"id": "a", "author": "隠者", "title": "t", "paragraphs": ["隠者疎簷下，" + rest]}
    plain = {"id": "c", "author": "y", "title": "u", "paragraphs": ["白日依山盡，" + rest]}
    lushi = {"id": "b", "author": "x", "paragraphs": ["浄髪粧成後，" + rest] * 2}
    dist = write_source(tmp_path, [quatrain, plain, lushi])
    mapped, unmapped = extract(dist)[0], extract(dist, standard_variants=False)[0]
    assert mapped[0]["lines"][0] == "隐者疏檐下" and mapped[0]["author"] == "隐者"  # the shipped corpora's rule
    # the row keeps t2s's text, which its split is drawn by; a row the mapping left alone has no such field
    assert mapped[0]["variant_text"] == "".join(unmapped[0]["lines"]) and "variant_text" not in mapped[1]
    assert unmapped[0]["lines"][0] == "隠者疎簷下" and "variant_text" not in unmapped[0]
    block = extract_blocks(dist, 5, set())[0][0]
    assert block["lines"][0] == "净发妆成后" and block["variant_text"].startswith("浄髪粧成后")
    assert extract_blocks(dist, 5, set(), standard_variants=False)[0][0]["lines"][0] == "浄髪粧成后"


def test_the_mapping_moves_no_poem_between_splits() -> None:
    from poetry_vae.data.corpus import Poem
    from poetry_vae.data.split import split_poems

    digits = "一二三四五六七八"
    # one shared line joins no poems (a group needs a shared pair): 64 groups, each drawn by its own text
    lines = [("隠者疎簷下", f"黄河{a}{b}流", f"欲穷{a}{b}目", f"更上{a}{b}楼") for a in digits for b in digits]
    before = [Poem(lines=poem_lines) for poem_lines in lines]
    after = [Poem(lines=(standardise(p.lines[0]), *p.lines[1:]), variant_text=p.text) for p in before]
    old, new = split_poems(before, 0.3, 0.3), split_poems(after, 0.3, 0.3)
    assert {s: [p.text for p in ps] for s, ps in old.items()} == {
        s: [p.variant_text for p in ps] for s, ps in new.items()}
    assert len(old["test"]) > 0 and len(old["train"]) > 0


def test_the_build_command_has_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--keep-variants" in capsys.readouterr().out


def test_the_shipped_corpora_hold_no_variant() -> None:
    from poetry_vae.data.variants import count_variants

    counts = count_variants("wujue", 5)
    assert counts["poems"] > 16_000 and counts["variants_left"] == 0
    # what the mapping changed, read back from the rows' variant_text
    assert 400 < counts["poems_mapped"] < 600 and counts["variant_chars"] >= counts["poems_mapped"]
    assert counts["vocabulary_before"] > counts["vocabulary_after"]


def test_prompts_take_the_spelling_the_vocabulary_knows() -> None:
    assert known_spellings("隐疏", {"隠", "疎"}) == "隠疎"  # standard typed, the model knows the variant
    assert known_spellings("隠疎", {"隐", "疏"}) == "隐疏"  # variant typed, the model knows the standard
    # a vocabulary built before the mapping knows both: the standard form, the one decoding writes
    assert known_spellings("隠", {"隐", "隠"}) == "隐" and known_spellings("月", {"月"}) == "月"
    assert known_spellings("隠，", {"x"}) == "隠，"  # nothing known: unchanged, the usual error follows


def test_sample_accepts_a_variant_the_model_lacks(capsys: pytest.CaptureFixture[str]) -> None:
    # the shipped model knows 两 and 来 but not 両 (Japanese) or 來 (traditional)
    overrides = quote_unicode_values(["n=1", "acrostic=両岸青山", "strategy=greedy"])
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("sample", overrides=overrides, return_hydra_config=True)
    written = write_poems(cfg)
    capsys.readouterr()
    assert [line[0] for line in written.shown[0].poem.lines] == list("两岸青山")


def test_reconstruct_accepts_a_variant_in_a_poem(capsys: pytest.CaptureFixture[str]) -> None:
    poem = "床前明月光，疑是地上霜。举头望明月，両岸思故乡。"  # 両: the Japanese form of 两
    overrides = quote_unicode_values(["mode=reconstruct", f"poems=[{poem}]"])
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("sample", overrides=overrides, return_hydra_config=True)
    written = write_poems(cfg)
    capsys.readouterr()
    assert written.shown[0].input == "床前明月光，疑是地上霜。举头望明月，两岸思故乡。"


def test_traditional_characters_are_not_variants() -> None:
    # t2s converts these itself: a prompt holding one keeps its one-line hint to write it simplified
    assert not {"盡", "鄉", "來", "亂"} & variant_map().keys()


def test_include_is_respelled_like_the_other_prompts() -> None:
    from types import SimpleNamespace

    from poetry_vae.generation.request import DecodeRequest
    from poetry_vae.sample import respelled

    ckpt = SimpleNamespace(vocab={"隠", "月"})  # a vocabulary that writes the variant
    request = respelled(DecodeRequest(include="隐月"), ckpt)  # type: ignore[arg-type]
    assert request.include == "隠月"


def test_decoding_never_writes_a_variant_whose_standard_form_the_model_knows() -> None:
    from poetry_vae.checkpoint import load_checkpoint, shipped_model
    from poetry_vae.data.variants import shadowed_variants
    from poetry_vae.generation.processors.prosody import get_hanzi
    from poetry_vae.prosody.masks import build_masks

    vocab = load_checkpoint(shipped_model()).vocab  # built before the shipped corpora mapped their variants
    shadowed = shadowed_variants(vocab.tokens)
    assert {"隠", "疎", "簷"} <= shadowed and not shadowed & {"隐", "疏", "檐", "月"}
    ids = [vocab.index[char] for char in shadowed]
    writable = get_hanzi(vocab, torch.device("cpu"))
    assert not writable[ids].any() and writable[vocab.index["隐"]]
    assert not build_masks(vocab.tokens).hanzi[ids].any()


def test_a_vocabulary_reads_a_character_it_holds_in_another_spelling() -> None:
    from poetry_vae.data.vocab import Vocabulary

    old = Vocabulary.build(["醤隠月"])  # built before the corpora mapped their variants
    assert old.encode("酱隐月") == old.encode("醤隠月") and old.encode("山") == [Vocabulary.unk_id]
    assert old.encode_many(["酱隐月"], 3).tolist() == [old.encode("醤隠月")]
    assert old.missing(["酱隐月山山"], 2) == ["山"]  # a checkpoint from before the rebuild covers the rebuilt text
    new = Vocabulary.build(["隐月"])
    assert new.encode("隠") == new.encode("隐") and "隠" not in new
