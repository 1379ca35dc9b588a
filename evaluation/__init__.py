"""Evaluation: the metric (one confusion matrix), scoring of prediction folders, ground truth, pupil/iris measurements."""
