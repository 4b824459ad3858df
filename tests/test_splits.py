import pandas as pd
import pytest

from cvlabel.errors import ConfigError
from cvlabel.splits import SplitConfig, assign_splits, speaker_genders, spread_over_speakers


def manifest_of(speakers: dict[str, tuple[str | None, int]], cv_split: dict[str, str] | None = None) -> pd.DataFrame:
    """speakers: client_id -> (gender, clips). Every clip from validated.tsv."""
    rows = []
    for cid, (gender, clips) in speakers.items():
        for j in range(clips):
            rows.append(
                {
                    "path": f"{cid}_{j}.mp3",
                    "client_id": cid,
                    "source_tsv": "validated",
                    "cv_split": (cv_split or {}).get(cid, ""),
                    "gender": gender,
                }
            )
    return pd.DataFrame(rows)


def population(n_male=20, n_female=12, clips=5):
    speakers = {f"m{i:02d}": ("male", clips) for i in range(n_male)}
    speakers.update({f"f{i:02d}": ("female", clips) for i in range(n_female)})
    return speakers


def test_speaker_disjoint_and_stratified():
    result, report = assign_splits(manifest_of(population()), SplitConfig(dev_fraction=0.2, test_fraction=0.2))
    used = result[result["split"] != ""]
    assert (used.groupby("client_id")["split"].nunique() == 1).all()
    for split in ("train", "dev", "test"):
        part = used[used["split"] == split]
        assert set(part["gender"]) == {"male", "female"}
    # each gender's speakers are split in the requested shares
    assert report.speakers["test"] == {"male": 4, "female": round(12 * 0.2)}
    assert report.speakers["dev"] == {"male": 4, "female": round(12 * 0.2)}
    assert sum(report.speakers[s]["male"] for s in ("train", "dev", "test")) == 20


def test_deterministic_whatever_the_row_order():
    manifest = manifest_of(population())
    first, _ = assign_splits(manifest)
    shuffled, _ = assign_splits(manifest.sample(frac=1.0, random_state=7).reset_index(drop=True))
    assert first.set_index("path")["split"].sort_index().equals(shuffled.set_index("path")["split"].sort_index())
    other_seed, _ = assign_splits(manifest, SplitConfig(seed=1))
    assert not first["split"].equals(other_seed["split"])


def test_release_dev_and_test_speakers_stay():
    manifest = manifest_of(population(), cv_split={"m00": "test", "f03": "dev", "m05": "dev"})
    result, _ = assign_splits(manifest, SplitConfig(dev_fraction=0.1, test_fraction=0.1))
    split_of = result.groupby("client_id")["split"].first()
    assert split_of["m00"] == "test" and split_of["f03"] == "dev" and split_of["m05"] == "dev"


def test_only_binary_self_reported_rows_are_used():
    speakers = population(6, 6)
    speakers.update({"x": ("other", 3), "y": ("declined", 3), "z": (None, 3)})
    result, _ = assign_splits(manifest_of(speakers))
    assert set(result.loc[result["split"] != "", "gender"]) == {"male", "female"}
    assert (result.loc[result["client_id"].isin(["x", "y", "z"]), "split"] == "").all()


def test_conflicting_speaker_reported_and_left_out():
    manifest = manifest_of(population(6, 6))
    manifest.loc[manifest["path"] == "m01_0.mp3", "gender"] = "female"
    manifest.loc[manifest["path"] == "f02_0.mp3", "gender"] = "declined"
    manifest.loc[manifest["path"] == "m03_0.mp3", "gender"] = None  # blank says nothing: no conflict
    genders, conflicting = speaker_genders(manifest)
    assert conflicting == ["f02", "m01"]
    assert genders["m03"] == "male"
    result, report = assign_splits(manifest)
    assert report.conflicting_speakers == ["f02", "m01"]
    assert (result.loc[result["client_id"].isin(conflicting), "split"] == "").all()
    assert (result.loc[(result["client_id"] == "m03") & result["gender"].notna(), "split"] != "").all()


def test_train_clips_capped_per_speaker():
    speakers = population(6, 6, clips=3)
    speakers["m00"] = ("male", 40)
    # no held-out splits, so the prolific speaker is certainly in train, whatever the hash order
    result, report = assign_splits(
        manifest_of(speakers), SplitConfig(max_clips_per_speaker=10, dev_fraction=0.0, test_fraction=0.0)
    )
    train = result[result["split"] == "train"]
    assert train.groupby("client_id").size().to_dict() == {**dict.fromkeys(set(train["client_id"]), 3), "m00": 10}
    assert report.capped_clips == 30
    uncapped, _ = assign_splits(
        manifest_of(speakers), SplitConfig(max_clips_per_speaker=0, dev_fraction=0.2, test_fraction=0.2)
    )
    assert (uncapped["split"] != "").sum() == len(uncapped)


def test_cap_applies_to_a_prolific_train_speaker():
    # one speaker per gender cannot be held out (fewer than 3), so both train, and the cap bites
    result, report = assign_splits(
        manifest_of({"m": ("male", 25), "f": ("female", 4)}), SplitConfig(max_clips_per_speaker=10)
    )
    assert (result["split"] == "train").sum() == 14
    assert report.capped_clips == 15


def test_only_configured_source_tsvs():
    manifest = manifest_of(population(6, 6))
    manifest.loc[manifest["client_id"] == "m00", "source_tsv"] = "other"
    result, _ = assign_splits(manifest)
    assert (result.loc[result["client_id"] == "m00", "split"] == "").all()
    result, _ = assign_splits(manifest, SplitConfig(source_tsvs=("validated", "other")))
    assert (result.loc[result["client_id"] == "m00", "split"] != "").all()


@pytest.mark.parametrize("dev,test", [(-0.1, 0.1), (0.5, 0.5), (1.0, 0.0)])
def test_bad_fractions(dev, test):
    with pytest.raises(ConfigError):
        assign_splits(manifest_of(population(3, 3)), SplitConfig(dev_fraction=dev, test_fraction=test))


def test_spread_over_speakers_takes_a_clip_of_each_speaker_before_a_second_of_any():
    rows = pd.DataFrame({"client_id": list("aaaaabcc"), "clip": [f"c{i}" for i in range(8)]})
    picked = spread_over_speakers(rows, 4, seed=0)
    assert len(picked) == 4 and set(picked["client_id"]) == {"a", "b", "c"}
    assert picked["client_id"].value_counts().max() == 2  # one speaker's second clip, no one's third
    assert picked["clip"].tolist() == sorted(picked["clip"], key=lambda c: int(c[1:]))  # in the rows' order
    assert {"c0", "c5", "c6"} <= set(picked["clip"])  # first clips first
    many = pd.DataFrame({"client_id": [f"s{i // 2}" for i in range(200)], "clip": range(200)})
    few = spread_over_speakers(many, 10, seed=0)
    assert few["client_id"].nunique() == 10 and few["client_id"].tolist() != [f"s{i}" for i in range(10)]  # seeded
    assert not spread_over_speakers(many, 10, seed=1)["client_id"].equals(few["client_id"])
    assert spread_over_speakers(rows, 0, seed=0) is rows and spread_over_speakers(rows, 8, seed=0) is rows
