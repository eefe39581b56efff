"""The ICDR diabetic-retinopathy grades and the referable-DR definition used across c3-fundus."""

GRADE_NAMES = ("no DR", "mild NPDR", "moderate NPDR", "severe NPDR", "PDR")
REFERABLE_FROM_GRADE = 2  #: referable DR = grade >= 2 (moderate NPDR or worse)
