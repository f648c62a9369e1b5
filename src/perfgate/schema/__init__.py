"""The schema: every document perfgate writes or reads (results, verdicts), and how files are written.

The bottom room: it imports nothing else of perfgate, and everything else may import it.
"""
