import unittest

from greet import greeting


class GreetingTest(unittest.TestCase):
    def test_names_are_greeted(self) -> None:
        self.assertEqual(greeting("dirk"), "Hello, dirk!")

    def test_blank_names_greet_the_world(self) -> None:
        self.assertEqual(greeting("  "), "Hello, world!")


if __name__ == "__main__":
    unittest.main()
