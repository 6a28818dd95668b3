"""interp.lazy: packages resolve exported names on first use and refuse unknown ones."""

import pytest

from interp.lazy import lazy_exports


def test_an_exported_name_resolves_to_the_defining_modules_object():
    import json

    getattr_, dir_ = lazy_exports("pkg", {"dumps": "json"})
    assert getattr_("dumps") is json.dumps
    assert dir_() == ["dumps"]


def test_an_unknown_name_is_an_attribute_error_naming_package_and_name():
    getattr_, _ = lazy_exports("pkg.sub", {"dumps": "json"})
    with pytest.raises(AttributeError, match=r"module 'pkg.sub' has no attribute 'loads'"):
        getattr_("loads")


@pytest.mark.parametrize("package", ["interp.tasks", "interp.organism", "interp.finetune"])
def test_every_listed_export_of_the_lazy_packages_exists(package):
    import importlib

    mod = importlib.import_module(package)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name
