import c3_cxr.plugin
from c3_core.batch import Batch, collate
from c3_core.testing import parametrize_with_checks
from c3_cxr.data.ct_examples import ct_batch
from c3_cxr.data.demo import make_demo_dataset

_CACHE: dict[tuple[str, str, int], Batch] = {}


def batch_factory(modality: str, domain: str, spatial_dims: int) -> Batch:
    """Two demo radiographs for ``cxr``; CT_small + Shepp–Logan (64 px) for ``ct`` (no CT demo)."""
    key = (modality, domain, spatial_dims)
    if key not in _CACHE:
        if modality == "cxr" and spatial_dims == 2:
            ds = make_demo_dataset(split="test")
            _CACHE[key] = collate([ds[0], ds[1]])
        elif modality == "ct":
            _CACHE[key] = ct_batch(spatial_dims)
        else:
            raise AssertionError(f"no {modality} {domain} {spatial_dims}-D test batch")
        if _CACHE[key].domain.value != domain:
            raise AssertionError(f"the {modality} test batch is {_CACHE[key].domain.value}, not {domain}")
    return _CACHE[key]


@parametrize_with_checks(c3_cxr.plugin, batch_factory=batch_factory, internal=True)  # released with c3-core
def test_conformance(check) -> None:  # noqa: ANN001
    check()
