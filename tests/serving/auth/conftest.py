from tests.serving.auth.standins import install

install()
