"""`qwdeploy eval`: how closely artifacts still compute their checkpoint — logit agreement by position,
perplexity, needle-in-a-haystack retrieval — side by side, with gates for CI."""
