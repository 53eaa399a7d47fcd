"""snn/registry.py: the one registration pattern, and the families that use it."""
import pytest

from snn.errors import DataError, SnnError
from snn.registry import Registry, UnknownNameError


def test_lookup_by_name_or_alias_case_blind_and_in_order():
    reg = Registry("widget")

    @reg.register("alpha", "a", summary="the first")
    def alpha():
        return 1

    reg.add("beta", 2, example="beta:N")
    assert reg.get(" Alpha ") is alpha and reg.get("A") is alpha and reg.get("beta") == 2
    assert reg.names() == ("alpha", "beta") and list(reg) == ["alpha", "beta"] and len(reg) == 2
    assert "a" in reg and "gamma" not in reg and 3 not in reg
    assert reg.entry("a").summary == "the first" and reg.choices() == "alpha or beta:N"


def test_unknown_names_list_every_name_and_are_user_errors():
    reg = Registry("widget")
    reg.add("alpha", 1)
    reg.add("beta", 2)
    reg.add("gamma", 3)
    with pytest.raises(UnknownNameError, match=r"unknown widget 'delta'; use alpha, beta or gamma") as info:
        reg.get("delta")
    assert isinstance(info.value, SnnError) and isinstance(info.value, ValueError)
    with pytest.raises(DataError):
        Registry("data set", error=DataError).get("x")


def test_a_name_registered_twice_is_refused():
    reg = Registry("widget")
    reg.add("alpha", 1, "a")
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("A", 2)


def test_the_families_are_registries():
    from channel.bit_errors import ERROR_MODELS, make_error_model
    from channel.links import LINK_FAMILIES, get_link
    from channel.transports import SCHEMES, TRANSPORTS
    from codec.datasets import DATASETS   # the readers register as codec.datasets loads
    from codec.model.backbones import BACKBONES, build_backbone

    assert SCHEMES == TRANSPORTS.names() == ("udp", "serial", "pty", "sim")
    assert LINK_FAMILIES.names() == ("lora", "ble", "802.15.4", "uart") and get_link("802154").mtu == 116
    assert set(ERROR_MODELS.names()) == {"iid", "ge", "awgn", "lora", "lora-phy", "none"}
    assert make_error_model("burst", 1e-2).__class__.__name__ == "GilbertElliott"
    assert DATASETS.names() == ("fmnist", "cifar10", "cifar100", "folder")
    assert "resnet14" in BACKBONES and "mobilenetv2_small" in BACKBONES
    with pytest.raises(SnnError, match="unknown backbone 'vgg16'; use resnet8, "):
        build_backbone("vgg16")
    with pytest.raises(SnnError, match="unknown error model 'nope'; use iid, ge, awgn, lora, none or lora-phy"):
        make_error_model("nope", 0.1)
