"""Judgement: statistics (pure functions), the baseline store, and the verdict of a case.

Nothing here runs an engine or reads pytest's config: :func:`perfgate.judge.verdict.judge`
takes trials, a baseline and a policy and returns a typed judgement.
"""
