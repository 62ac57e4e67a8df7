pytest_plugins = ["jupyter_convo.testing.pytest_plugin"]
