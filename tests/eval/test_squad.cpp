// The SQuAD module: the official metric, and SQuAD-format files as users have them.
#include <catch2/catch.hpp>

#include "eval/squad.hpp"
#include "ldqa/error.hpp"

using namespace ldqa;

TEST_CASE("SQuAD normalisation and scores follow the official script", "[eval]") {
  CHECK(eval::squad_normalize("The  Quick, brown fox!") == "quick brown fox");
  CHECK(eval::squad_normalize("an Apple a day") == "apple day");
  CHECK(eval::squad_normalize("ÉCOLE") == "école");
  CHECK(eval::squad_exact("the Eiffel Tower.", {"Tower", "Eiffel tower"}) == 1.0);
  CHECK(eval::squad_exact("Eiffel", {"Eiffel tower"}) == 0.0);
  CHECK(eval::squad_f1("Eiffel", {"Eiffel tower"}) == Approx(2 * 1.0 * 0.5 / 1.5));
  CHECK(eval::squad_f1("x b b", {"b b c", "y"}) == Approx(2.0 / 3));
  CHECK(eval::squad_f1("a b b", {"b b c"}) == Approx(0.8));  // "a" is an article: dropped
  CHECK(eval::squad_f1("", {"x"}) == 0.0);
  CHECK(eval::squad_f1("the", {"a"}) == 0.0);
}
