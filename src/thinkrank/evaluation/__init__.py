"""Evaluation: metrics over runs and qrels (``thinkrank.evaluation.metrics``).

Kept free of imports so that ``import thinkrank.evaluation`` stays light; import the
sub-modules you need.
"""
