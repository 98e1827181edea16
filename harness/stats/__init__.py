"""Statistics: pure functions of numbers, the bottom layer every verdict and measurement builds on."""
