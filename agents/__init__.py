"""The four LangGraph agents (cost, performance, resource, application) and the
coordinator. Empty until the agents issues land; agents read the stores in
``optiinfra`` and never import ``providers``."""
