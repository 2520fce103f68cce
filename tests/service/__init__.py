import pytest

# the console tests' plugin (fixtures with asserts) is imported by its modules before pytest
# registers it: rewrite its asserts anyway
pytest.register_assert_rewrite("tests.service.console_browser")
