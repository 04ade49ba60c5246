"""``--resume`` continues the campaign it names, whatever the host measures at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewise.errors import EdgewiseError, SpecError
from edgewise.interference.campaign.config import CampaignConfig, default_campaign_name


def test_the_default_name_comes_from_the_inputs_alone() -> None:
    assert default_campaign_name("digits_cnn", rate_rps=20.0) == "digits_cnn@20rps-seed0"
    at_load = default_campaign_name("digits_cnn", rate_rps=20.0, load=0.2, seed=3)
    assert at_load == "digits_cnn@load0.2-seed3"
    # the rate is not part of it with a load: the one measured at start does not matter
    assert default_campaign_name("digits_cnn", rate_rps=31.0, load=0.2, seed=3) == at_load
    assert default_campaign_name("digits_cnn", load=0.3, seed=3) != at_load
    assert default_campaign_name("digits_cnn@7rps") == "digits_cnn@7rps-seed0"
    assert default_campaign_name("cmd:true") == "cmd:true-seed0"
    names = {
        default_campaign_name("digits_cnn"),
        default_campaign_name("digits_cnn", confine="split"),
        default_campaign_name("digits_cnn", device="cuda"),
        default_campaign_name("digits_cnn", batch_size=4),
        default_campaign_name("digits_cnn", space={"cpu": (0.0, 0.5)}),
        default_campaign_name("digits_cnn", space={"cpu": (0.0, 0.6)}),
    }
    assert len(names) == 6
    builtin = CampaignConfig(name="x").space
    assert default_campaign_name("digits_cnn", space=builtin) == "digits_cnn@20rps-seed0"


class _Stored:
    """The target a first start stored (its rate measured then: 31 rps)."""

    def __init__(self) -> None:
        self.name, self.kind = "digits_cnn@31rps", "zoo"
        self.params = {"model": "digits_cnn", "rate_rps": 31.0, "batch_size": 1}


def test_resume_uses_the_stored_rate_and_a_taken_name_is_refused_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgewise.interference import target as target_mod
    from edgewise.interference.campaign.setup import campaign_target
    from edgewise.interference.campaign.store import open_campaign
    from edgewise.kb import KnowledgeBase

    timed: list[str] = []

    def solo_service_ms(model: str, **kw: object) -> float:
        timed.append(model)
        return 10.0  # this start would measure 20 rps at load 0.2

    monkeypatch.setattr(target_mod, "solo_service_ms", solo_service_ms)
    kb = KnowledgeBase.open(f"sqlite:///{tmp_path / 'kb.sqlite'}")
    name = default_campaign_name("digits_cnn", load=0.2)
    open_campaign(kb, CampaignConfig(name=name), _Stored(), resume=False)

    with pytest.raises(EdgewiseError, match=r"already exists.*--resume"):
        campaign_target(kb, name, resume=False, app="digits_cnn", load=0.2)
    assert timed == []  # refused before anything was timed or started

    resumed = campaign_target(kb, name, resume=True, app="digits_cnn", load=0.2)
    assert resumed.name == "digits_cnn@31rps" and timed == []

    fresh = campaign_target(kb, "other", resume=False, app="digits_cnn", load=0.2)
    assert fresh.name == "digits_cnn@20rps" and timed == ["digits_cnn"]

    with pytest.raises(SpecError, match="profiles digits_cnn@31rps, not mobilenet_v2@20rps"):
        campaign_target(kb, name, resume=True, app="mobilenet_v2@20rps")
