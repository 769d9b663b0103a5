import sys

from appliance.lab.run import main

sys.exit(main(sys.argv[1:]))
