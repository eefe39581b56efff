"""Registrar hooks of c3-mri: ids and lazy targets only (no torch import)."""

from c3_core.plugins.markers import hookimpl


@hookimpl
def c3_register_operators(registry):
    registry.add("mri.bias_field", "c3_mri.operators.bias_field:BiasField", "B1 receive bias: exp of a separable low-order Legendre field")
    registry.add("mri.b0_distortion", "c3_mri.operators.b0_distortion:B0Distortion", "off-resonance displacement along phase-encode with Jacobian")
    registry.add("mri.noise", "c3_mri.operators.noise:MagnitudeNoise", "Rician (1 coil) or non-central chi (L coils, SoS) noise at a target SNR")
    registry.add("mri.contrast", "c3_mri.operators.contrast:ProtocolContrast", "Bloch-equation contrast change (SE / SPGR / IR) from tissue maps")
    registry.add("mri.slice_profile", "c3_mri.operators.slice_profile:SliceProfile", "slice-profile broadening along the slice axis (FWHM in mm)")
    registry.add("mri.gibbs", "c3_mri.operators.kspace:GibbsTruncation", "Gibbs ringing from k-space truncation")
    registry.add("mri.ghosting", "c3_mri.operators.kspace:Ghosting", "N/2 ghosting from phase errors on alternate k-space lines")


@hookimpl
def c3_register_datasets(registry):
    registry.add(
        "mri.demo",
        "c3_mri.data.demo:make_demo_dataset",
        "MS-lesion FLAIR volumes synthesised from the ICBM152 template, 3 sites (site C held out)",
        task="segmentation",
        demo=True,
        default_model="mri.demo_unet",
        default_neighbourhood="c3_mri:neighbourhoods/default.toml",
    )
    registry.add(
        "mri.nifti",
        "c3_mri.data.nifti:make_nifti_dataset",
        "NIfTI cohort from a CSV (image, mask, site[, tissue]) or a folder",
        task="segmentation",
        accepts_path=True,
        default_model="mri.unet3d",
        default_neighbourhood="c3_mri:neighbourhoods/default.toml",
    )


@hookimpl
def c3_register_models(registry):
    registry.add("mri.demo_unet", "c3_mri.models:demo_unet", "small MONAI 3D U-Net trained on the demo sites A and B", task="segmentation", architecture="monai.UNet", spatial_dims=3, demo=True)
    registry.add("mri.unet3d", "c3_mri.models:unet3d", "MONAI 3D U-Net with sliding-window inference", task="segmentation", architecture="monai.UNet", spatial_dims=3)
