"""The training job for the AdaIN decoder: ``python -m training.train``, ``training.recipe``, ``training.corpus`` ...

It imports ``model`` (the networks, AdaIN, image I/O); ``model`` never imports it, and the
serving image does not ship it."""
