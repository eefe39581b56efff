"""The C3 metric set: classification, calibration, neighbourhood, segmentation, bootstrap CIs."""
