"""Example models for pytest-cnnbudget's budget gate."""
